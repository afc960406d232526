"""Shared fixtures: settings in a temporary folder, a real SQLite store, PostgreSQL when present."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot import config
from bot.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEWSBOT_SHARED", ROOT.parent / "shared"))
SEED = ROOT / "articles" / "nato-russland-rat-2022-01.txt"
POSTGRES_URL = os.environ.get(
    "NEWSBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> bool:
    """Whether something listens on the PostgreSQL test server's port."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def settings(tmp_path: Path) -> config.Settings:
    """Settings whose database and article folder live in a fresh temporary folder."""
    (tmp_path / "articles").mkdir()
    return config.load(
        ROOT / "config" / "newsbot.toml",
        env={},
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "articles": {"folder": str(tmp_path / "articles")},
        },
    )


@pytest.fixture
async def store(settings: config.Settings) -> AsyncIterator[Store]:
    """A real SQLite file store."""
    async with Store.open(settings.storage.url()) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[Store]:
    """The SQLite store, then an emptied PostgreSQL one (skipped when PostgreSQL is absent)."""
    if request.param == "sqlite":
        yield store
        return
    if not postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (set NEWSBOT_TEST_POSTGRES_URL)")
    async with Store.open(POSTGRES_URL) as pg:
        async with pg.engine.begin() as conn:
            for table in (
                "feedback",
                "deliveries",
                "verdicts",
                "subscriptions",
                "tombstones",
                "articles",
                "sources",
            ):
                await conn.execute(sa.text(f"DELETE FROM {table}"))
        yield pg


@pytest.fixture
def seed_text() -> str:
    """The seed article as shipped in articles/."""
    return SEED.read_text(encoding="utf-8")
