"""Shared fixtures: settings in a temporary folder, a real store on SQLite and on PostgreSQL.

A test module marked `both_databases` runs each test that uses `settings` (and so `store`)
twice: on a SQLite file, and on the PostgreSQL server in a schema of its own, created for the
test and dropped after it. Where no server answers, the PostgreSQL half skips with one message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot import config
from bot.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEWSBOT_SHARED", ROOT.parent / "shared"))
SEED = ROOT / "articles" / "nato-russland-rat-2022-01.txt"
POSTGRES_URL = os.environ.get(
    "NEWSBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


_server = sa.make_url(POSTGRES_URL)
NO_POSTGRES = (
    f"PostgreSQL half skipped: no server at {_server.host}:{_server.port or 5432} "
    "(start one, or set NEWSBOT_TEST_POSTGRES_URL)"
)
_schemas = itertools.count(1)
_skipped_halves = pytest.StashKey[int]()


def postgres_available() -> bool:
    """Whether something listens on the PostgreSQL test server's port."""
    url = sa.make_url(POSTGRES_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=0.5):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_databases: run the module's tests on SQLite and on PostgreSQL (fresh schema each)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without a server the PostgreSQL halves are set aside at once: one line in the summary
    # (below) instead of one skip line per test.
    halves = [
        item
        for item in items
        if getattr(item, "callspec", None) is not None
        and item.callspec.params.get("database") == "postgresql"  # type: ignore[attr-defined]
    ]
    if halves and not postgres_available():
        config.hook.pytest_deselected(items=halves)
        items[:] = [item for item in items if item not in set(halves)]
        config.stash[_skipped_halves] = len(halves)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    skipped = config.stash.get(_skipped_halves, 0)
    if skipped:
        terminalreporter.write_line(f"{NO_POSTGRES}: {skipped} tests not run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test may pin its backend: @pytest.mark.parametrize("database", ["sqlite"], indirect=True).
    pinned = any(
        mark.args and mark.args[0] == "database"
        for mark in metafunc.definition.iter_markers("parametrize")
    )
    marked = metafunc.definition.get_closest_marker("both_databases") is not None
    if "database" in metafunc.fixturenames and marked and not pinned:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


def _admin(statements: list[str]) -> None:
    """Run statements on the PostgreSQL test server, from any thread or event loop."""

    async def run() -> None:
        engine = create_async_engine(POSTGRES_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                for statement in statements:
                    await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    # A loop of its own in a thread of its own: fixtures are set up inside and outside loops.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the settings' file), or the URL of a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    # A role whose search_path is its own schema alone: every table the store creates or reads
    # is there, with no setting on the connection, and the public schema's tables are unseen.
    name = f"nbt_{os.getpid()}_{next(_schemas)}"
    _admin(
        [
            f"DROP SCHEMA IF EXISTS {name} CASCADE",
            f"DROP ROLE IF EXISTS {name}",
            f"CREATE ROLE {name} SUPERUSER LOGIN",
            f"CREATE SCHEMA {name} AUTHORIZATION {name}",
            f"ALTER ROLE {name} SET search_path = {name}",
        ]
    )
    try:
        yield sa.make_url(POSTGRES_URL).set(username=name).render_as_string(hide_password=False)
    finally:
        _admin(
            [
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE usename = '{name}' AND pid <> pg_backend_pid()",
                f"DROP SCHEMA IF EXISTS {name} CASCADE",
                f"DROP ROLE IF EXISTS {name}",
            ]
        )


@pytest.fixture
def settings(tmp_path: Path, database: str | None) -> config.Settings:
    """Settings whose database and article folder live in a fresh temporary folder.

    In a `both_databases` module the database is, in one of the two runs, a fresh PostgreSQL
    schema instead of the folder's SQLite file."""
    (tmp_path / "articles").mkdir()
    storage: dict[str, str] = {"data_dir": str(tmp_path / "data")}
    if database is not None:
        storage["database_url"] = database
    return config.load(
        ROOT / "config" / "newsbot.toml",
        env={},
        overrides={"storage": storage, "articles": {"folder": str(tmp_path / "articles")}},
    )


@pytest.fixture
async def store(settings: config.Settings) -> AsyncIterator[Store]:
    """A real store: the SQLite file of `settings`, or its PostgreSQL schema."""
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
                "source_owners",
                "sources",
            ):
                await conn.execute(sa.text(f"DELETE FROM {table}"))
        yield pg


@pytest.fixture
def seed_text() -> str:
    """The seed article as shipped in articles/."""
    return SEED.read_text(encoding="utf-8")
