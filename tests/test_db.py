from bot.db import normalise_url


def test_normalise_url() -> None:
    assert normalise_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalise_url("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
