from pathlib import Path

import pytest

from bot import config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_file_is_valid_and_matches_defaults() -> None:
    shipped = config.load(ROOT / "config" / "newsbot.toml", env={})
    assert shipped == config.Settings()


def test_defaults_without_file(tmp_path: Path) -> None:
    settings = config.Settings()
    assert settings.storage.url() == "sqlite+aiosqlite:///data/newsbot.sqlite3"
    assert settings.articles.folder == Path("articles")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(env={"NEWSBOT_CONFIG": str(tmp_path / "missing.toml")})


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_treshold = 0.9\n")
    with pytest.raises(config.ConfigError, match=r"unknown key classifier\.alert_treshold"):
        config.load(path, env={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_threshold = 1.5\n")
    with pytest.raises(config.ConfigError, match=r"classifier\.alert_threshold"):
        config.load(path, env={})


def test_thresholds_must_be_ordered(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_threshold = 0.3\ndigest_threshold = 0.6\n")
    with pytest.raises(config.ConfigError, match="must not be below"):
        config.load(path, env={})


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(path, env={})


def test_secrets_only_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[secrets]\ntelegram_bot_token = 'x'\n")
    with pytest.raises(config.ConfigError, match="use the environment"):
        config.load(path, env={})
    settings = config.load(ROOT / "config" / "newsbot.toml", env={"TELEGRAM_BOT_TOKEN": "123:ABC"})
    token = settings.secrets.telegram_bot_token
    assert token is not None and token.get_secret_value() == "123:ABC"
    assert "123:ABC" not in repr(settings) and "123:ABC" not in str(settings)


def test_environment_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\ndatabase_url = "sqlite:///file.db"\n')
    env = {
        "NEWSBOT_DATABASE_URL": "postgresql://u@h/db",
        "NEWSBOT_TELEGRAM_API_URL": "http://127.0.0.1:9/bot",
    }
    settings = config.load(path, env=env)
    assert settings.storage.database_url == "postgresql://u@h/db"
    assert settings.telegram.api_url == "http://127.0.0.1:9/bot"
    flagged = config.load(path, env=env, overrides={"storage": {"database_url": "sqlite:///x.db"}})
    assert flagged.storage.database_url == "sqlite:///x.db"
