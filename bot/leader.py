"""Which instance leads: one per deployment (PostgreSQL schema), elected with an advisory lock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

# pg_advisory_lock key of the leader; the schema migration uses 4711001. The lock's second key
# is a hash of the schema the instance's tables are in (its search_path): advisory locks are
# per database, and deployments in two schemas of one database must each elect their own.
LEADER_KEY = 4711002
SCHEMA_KEY = "hashtext(current_schema())"

# Taken only while no instance of an older newsbot holds the database-wide lock (a one-key
# lock on LEADER_KEY), so a rolling upgrade never has two leaders; a refusal is dropped with
# the connection, which releases the lock if it was taken.
TAKE = sa.text(
    f"SELECT pg_try_advisory_lock(:key, {SCHEMA_KEY}) AND NOT EXISTS ("
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND classid = 0 AND objid = :key"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
)

OnChange = Callable[[bool], Awaitable[None]]


def election_engine(url: str) -> AsyncEngine:
    """An engine for the election alone: no pool, so a dropped lock session really closes."""
    from sqlalchemy.pool import NullPool

    # The session names its instance, so `newsbot status` can say who leads.
    name = f"newsbot {socket.gethostname()} pid {os.getpid()}"
    connect_args = {"server_settings": {"application_name": name[:63]}}
    if sa.make_url(url).get_backend_name() != "postgresql":
        connect_args = {}
    return create_async_engine(url, poolclass=NullPool, connect_args=connect_args)


async def current_leader(engine: AsyncEngine, key: int = LEADER_KEY) -> str | None:
    """Who holds the leader lock of this deployment (its session's name and start)."""
    # A two-key lock shows as classid, objid and objsubid 2 (the int4 hash reads as an oid).
    query = sa.text(
        "SELECT a.application_name, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
        f" AND l.classid = :key AND l.objid = {SCHEMA_KEY}::oid"
        # Advisory locks are per database: another deployment on the same server holds its own.
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query, {"key": key})).first()
    if row is None:
        return None
    since = f"{row.backend_start:%Y-%m-%d %H:%M:%S %Z}"
    return f"{row.application_name or 'unnamed session'} (since {since})"


class Leadership:
    """Holds or waits for the leader lock; `is_leader` says which, `on_change` hears switches.

    The lock lives on a connection of its own (give it an engine with `NullPool`, see
    `election_engine`): PostgreSQL releases it when that connection
    ends, so a leader that dies (even by SIGKILL) hands over as soon as its socket closes, and
    a follower takes over at its next attempt. SQLite has one instance per file, which leads.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retry_seconds: float = 5.0,
        on_change: OnChange | None = None,
        key: int = LEADER_KEY,
    ) -> None:
        self.engine, self.retry_seconds, self.on_change, self.key = (
            engine,
            retry_seconds,
            on_change,
            key,
        )
        self.is_leader = False
        self._conn: AsyncConnection | None = None
        self._waiting_logged = False

    @property
    def shared(self) -> bool:
        """Whether several instances can share this database (only then is there an election)."""
        return self.engine.dialect.name == "postgresql"

    async def attempt(self) -> bool:
        """One election step: take the lock if free, or check that we still hold it."""
        if not self.shared:
            await self._set(True)
            return True
        try:
            if self._conn is None:
                self._conn = await self.engine.connect()
                got = (await self._conn.execute(TAKE, {"key": self.key})).scalar()
                # An open transaction would hold a snapshot for the process lifetime.
                await self._conn.commit()
                if not got:
                    await self._drop_connection()
            else:
                # The lock is as alive as its connection: a query proves both.
                await self._conn.execute(sa.text("SELECT 1"))
                await self._conn.commit()
        except Exception as exc:  # the database went away: whoever held the lock lost it
            log.warning("leader election: database unreachable (%s)", type(exc).__name__)
            await self._drop_connection()
        await self._set(self._conn is not None)
        return self.is_leader

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the election until `stop`; then release the lock."""
        try:
            while not stop.is_set():
                await self.attempt()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_seconds)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give up leadership (at shutdown) so another instance takes over at once."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.execute(
                    sa.text(f"SELECT pg_advisory_unlock(:key, {SCHEMA_KEY})"), {"key": self.key}
                )
                await self._conn.commit()
        await self._drop_connection()
        await self._set(False)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close()
        except Exception:
            # The server already killed the session: discard it instead of pooling it.
            with contextlib.suppress(Exception):
                await conn.invalidate()

    async def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            if not leading and self.shared and not self._waiting_logged:
                # Followers wait quietly: one line, not one per attempt.
                log.info("another instance leads; this one follows")
                self._waiting_logged = True
            return
        self.is_leader = leading
        self._waiting_logged = False
        log.info("this instance %s", "now leads" if leading else "no longer leads")
        if self.on_change is not None:
            await self.on_change(leading)
