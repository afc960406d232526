"""The database engine: URLs, SQLite pragmas, the UTC timestamp type and the migration runner.

SQLite (default, one file) and PostgreSQL share this code. The schema is versioned in
`schema_version` and upgraded in place by ordered migration steps (`bot.schema.MIGRATIONS`), so an
upgrade never loses data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """A stored timestamp as timezone-aware UTC (SQLite hands back naive ones)."""
    # Everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Convert to UTC on the way in."""
        # SQLite keeps the wall-clock digits and drops the offset, so convert before storing.
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Timezone-aware UTC on the way out."""
        return aware(value)


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer newsbot; this one must not write to it."""


def normalise_url(url: str) -> str:
    """Pick the async driver for plain `sqlite:///` and `postgresql://` URLs."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            url = driver + url[len(plain) :]
            break
    if url.startswith("postgresql+asyncpg://") and "sslmode=" in url:
        # libpq's `sslmode` (common in PostgreSQL URLs) is `ssl` for asyncpg, same values.
        parsed = sa.make_url(url)
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        url = parsed.set(query=query).render_as_string(hide_password=False)
    return url


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; a SQLite file gets its folder, and its pragmas on connect."""
    url = normalise_url(url)
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite" and sa_url.database not in (None, "", ":memory:"):
        Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
    # A pooled PostgreSQL connection can die with its server (restart, failover, a proxy
    # cutting it); pre-ping replaces it on checkout instead of failing every later query.
    # hide_parameters: a database error's text (logged, or printed by the CLI) would
    # otherwise carry the statement's values — chat ids, user ids, message text.
    postgres = sa_url.get_backend_name() == "postgresql"
    engine = create_async_engine(url, pool_pre_ping=postgres, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    if postgres:
        sa.event.listen(engine.sync_engine, "handle_error", _hide_row_values)
    return engine


def _hide_row_values(context: sa.engine.ExceptionContext) -> None:
    # hide_parameters' counterpart on PostgreSQL: the server's DETAIL quotes the row's values
    # ("Key (platform, chat_id, thread_id)=(telegram, 987654321, ) already exists."), and
    # asyncpg puts it into its error's text, which a logged traceback prints.
    error: BaseException | None = context.original_exception
    while error is not None:
        if getattr(error, "detail", None):
            error.detail = None  # type: ignore[attr-defined]
        error = error.__cause__


async def migrate(
    engine: AsyncEngine,
    steps: Sequence[Callable[[Connection], None]],
    version_table: sa.Table,
) -> int:
    """Apply the pending `steps` (version N is steps[N-1]); return the schema version in force."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several instances may start at once; one migrates, the others wait for it.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(4711001)"))
        await conn.run_sync(lambda c: version_table.create(c, checkfirst=True))
        current = (
            await conn.execute(sa.select(sa.func.max(version_table.c.version)))
        ).scalar() or 0
        if current > len(steps):
            raise SchemaTooNew(
                f"the database has schema version {current}, newer than this newsbot "
                f"knows ({len(steps)}): upgrade newsbot, or use another database"
            )
        for version in range(current + 1, len(steps) + 1):
            log.info("upgrading database schema to version %d", version)
            await conn.run_sync(steps[version - 1])
            await conn.execute(version_table.insert().values(version=version, applied_at=utcnow()))
        return max(current, len(steps))


def insert_ignore(conn: AsyncConnection, table: sa.Table) -> Any:
    """INSERT that skips rows violating a unique constraint, in this connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    """INSERT that replaces every column of a row whose primary key exists, in this dialect."""
    keys = [column.name for column in table.primary_key.columns]
    others = [column.name for column in table.columns if column.name not in keys]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={name: pg.excluded[name] for name in others}
        )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={name: lite.excluded[name] for name in others}
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read while the service writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
