"""Shared fixtures: settings in a temporary folder, a real store on SQLite and on PostgreSQL.

Every test that uses `database` (directly, or through `settings` or `store`) runs twice: on a
SQLite file, and on the PostgreSQL server in a schema of its own, created for the test and
dropped after it; the PostgreSQL half carries the `postgres` marker (`pytest -m postgres`).
A test about one backend alone pins it:
`@pytest.mark.parametrize("database", ["sqlite"], indirect=True)`. Where no server answers,
the PostgreSQL halves are set aside with one line in the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
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


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("database")


# First, so that `-m postgres` (the mark plugin's own pass) sees the marker on pinned halves too.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _backend(item) == "postgresql":
            item.add_marker(pytest.mark.postgres)
    # Those, and the tests that reach PostgreSQL on their own (marked so).
    halves = [item for item in items if item.get_closest_marker("postgres") is not None]
    # Without a server the PostgreSQL halves are set aside at once: one line in the summary
    # (below) instead of one skip line per test.
    if halves and not postgres_available():
        config.hook.pytest_deselected(items=halves)
        gone = set(halves)
        items[:] = [item for item in items if item not in gone]
        config.stash[_skipped_halves] = len(halves)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    skipped = config.stash.get(_skipped_halves, 0)
    if skipped:
        terminalreporter.write_line(f"{NO_POSTGRES}: {skipped} tests not run")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every test on a store runs on both backends, unless it pins one:
    # @pytest.mark.parametrize("database", ["sqlite"], indirect=True).
    pinned = any(
        mark.args and mark.args[0] == "database"
        for mark in metafunc.definition.iter_markers("parametrize")
    )
    if "database" in metafunc.fixturenames and not pinned:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


def only(backend: str, why: str) -> pytest.MarkDecorator:
    """Pins a test to one backend ("sqlite" or "postgresql"); `why` says what makes it so."""
    assert why, "say why the test is about one backend"
    return pytest.mark.parametrize("database", [backend], indirect=True)


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


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a fresh PostgreSQL schema (and a role of its own), dropped afterwards."""
    # A role whose search_path is its own schema alone: every table the store creates or reads
    # is there, with no setting on the connection, and the public schema's tables are unseen.
    # The pid keeps parallel pytest processes (xdist workers) apart.
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
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the settings' file), or the URL of a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    with postgres_schema() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database: str | None) -> config.Settings:
    """Settings whose database and article folder live in a fresh temporary folder.

    On the PostgreSQL half the database is a fresh schema instead of the folder's SQLite file."""
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


OtherStore = Callable[[], contextlib.AbstractAsyncContextManager[Store]]


@pytest.fixture
def other_store(database: str | None, tmp_path: Path) -> OtherStore:
    """Opens a further, empty store on the test's backend: another SQLite file, or schema."""
    names = itertools.count(1)

    @contextlib.asynccontextmanager
    async def open_other() -> AsyncIterator[Store]:
        if database is None:
            url = f"sqlite+aiosqlite:///{tmp_path / f'other-{next(names)}.sqlite3'}"
            async with Store.open(url) as opened:
                yield opened
            return
        with postgres_schema() as url:
            async with Store.open(url) as opened:
                yield opened

    return open_other


def database_env(settings: config.Settings) -> dict[str, str]:
    """What points a `newsbot` subprocess at the PostgreSQL schema of `settings`, if it has one.

    (Without it the subprocess uses the SQLite file in its NEWSBOT_DATA_DIR, as `settings` does.)"""
    url = settings.storage.database_url
    return {"NEWSBOT_DATABASE_URL": url} if url else {}


@pytest.fixture
def seed_text() -> str:
    """The seed article as shipped in articles/."""
    return SEED.read_text(encoding="utf-8")


async def start_run(env: dict[str, str], *, stdout: bool = False) -> asyncio.subprocess.Process:
    """A real `newsbot run` with `env`: stdin closed, stderr piped (and stdout, if asked)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout else None,
        stderr=asyncio.subprocess.PIPE,
    )
