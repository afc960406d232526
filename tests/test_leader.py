import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.config import Settings
from bot.leader import Leadership, election_engine

from .conftest import POSTGRES_URL, only, postgres_schema

pytestmark = pytest.mark.reliability
# The advisory-lock election is PostgreSQL's (SQLite has one instance per file, which leads).
ELECTION = only("postgresql", "the advisory-lock election")


@pytest.fixture
async def engines(database: str | None) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two instances' election engines on the test's PostgreSQL schema."""
    assert database is not None, "pin the test to PostgreSQL: the election is PostgreSQL's"
    first, second = election_engine(database), election_engine(database)
    yield first, second
    await first.dispose()
    await second.dispose()


async def until(condition: Leadership, rounds: int = 150) -> int:
    """Election attempts until `condition` leads; how many it took."""
    for attempt in range(1, rounds + 1):
        if await condition.attempt():
            return attempt
        await asyncio.sleep(0.2)
    raise AssertionError("never became leader")


@ELECTION
async def test_one_leader_and_handover_on_release(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    changes: list[tuple[str, bool]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def record(leading: bool) -> None:
            changes.append((name, leading))

        return record

    a = Leadership(engines[0], on_change=recorder("a"))
    b = Leadership(engines[1], on_change=recorder("b"))
    assert await a.attempt() is True
    assert await b.attempt() is False
    assert await a.attempt() is True  # still holds it
    assert await b.attempt() is False
    await a.release()
    assert await b.attempt() is True
    assert changes == [("a", True), ("a", False), ("b", True)]
    await b.release()


@ELECTION
async def test_leader_whose_connection_is_killed_steps_down_and_another_takes_over(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a, b = Leadership(engines[0]), Leadership(engines[1])
    assert await a.attempt() and not await b.attempt()
    # The database drops the leader's session, as a restart or a network cut would.
    async with engines[1].connect() as admin:
        await admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = 4711002 AND objid = hashtext(current_schema())::oid AND granted"
            )
        )
        await admin.commit()
    assert await a.attempt() is False and a.is_leader is False
    assert await until(b) == 1
    # The old leader retries, but the lock is taken: exactly one leader.
    assert await a.attempt() is False
    await b.release()


@ELECTION
async def test_killed_leader_process_hands_over(
    engines: tuple[AsyncEngine, AsyncEngine], database: str, tmp_path: Path
) -> None:
    ready = tmp_path / "leading"
    script = f"""
import asyncio, pathlib
from bot.leader import Leadership, election_engine, election_engine
async def main():
    lead = Leadership(election_engine({database!r}))
    assert await lead.attempt()
    pathlib.Path({str(ready)!r}).write_text("yes")
    await asyncio.Event().wait()
asyncio.run(main())
"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=Path(__file__).parents[1]
    )
    try:
        for _ in range(300):
            if ready.exists() or process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert ready.exists(), "the leader process did not start"
        follower = Leadership(engines[1])
        assert await follower.attempt() is False
        os.kill(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
        # Well within the 30 s handover the deployment docs promise (attempts are 0.2 s apart).
        assert await until(follower) <= 150
        await follower.release()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@only("sqlite", "SQLite's side of the election: there is none")
async def test_sqlite_has_one_instance_which_leads(settings: Settings) -> None:
    engine = create_async_engine(settings.storage.url())
    lead = Leadership(engine)
    assert lead.shared is False and await lead.attempt() is True
    await engine.dispose()


@ELECTION
async def test_run_releases_the_lock_at_stop(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    stop = asyncio.Event()
    a, b = Leadership(engines[0], retry_seconds=0.05), Leadership(engines[1])
    task = asyncio.create_task(a.run(stop))
    for _ in range(200):
        if a.is_leader:
            break
        await asyncio.sleep(0.05)
    assert a.is_leader
    stop.set()
    await task
    assert await b.attempt() is True
    await b.release()


@ELECTION
async def test_the_lock_holder_is_named_for_status(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    from bot.leader import current_leader

    assert await current_leader(engines[1]) is None
    lead = Leadership(engines[0])
    assert await lead.attempt()
    holder = await current_leader(engines[1])
    assert holder is not None and holder.startswith(f"newsbot {socket.gethostname()} pid ")
    await lead.release()
    assert await current_leader(engines[1]) is None


@ELECTION
async def test_deployments_in_two_schemas_of_one_database_each_elect_their_own_leader(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """The lock was per database: a deployment in another schema (a test's, a tenant's) took
    it, and this one's instances all followed, so nothing was polled or sent."""
    from bot.leader import current_leader

    with postgres_schema() as url:
        other = election_engine(url)
        try:
            elsewhere = Leadership(other)
            assert await elsewhere.attempt()
            assert await current_leader(engines[0]) is None
            here, second = Leadership(engines[0]), Leadership(engines[1])
            assert await here.attempt() and not await second.attempt()
            assert await current_leader(other) is not None
            await here.release()
            await elsewhere.release()
        finally:
            await other.dispose()
    # An instance of an older newsbot (its lock was database-wide) still leads: no second one.
    async with engines[1].connect() as old:
        await old.execute(sa.text("SELECT pg_advisory_lock(4711002)"))
        assert await Leadership(engines[0]).attempt() is False
        await old.execute(sa.text("SELECT pg_advisory_unlock(4711002)"))
        await old.commit()
    new = Leadership(engines[0])
    assert await new.attempt() is True
    await new.release()


@ELECTION
async def test_status_does_not_name_the_leader_of_another_database(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """A newsbot leading another database on the same server was named as this one's leader."""
    from sqlalchemy.engine import make_url

    from bot.leader import current_leader

    url = make_url(POSTGRES_URL)
    other_name = f"{url.database}_other_deployment"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{other_name}"'))
        await conn.execute(sa.text(f'CREATE DATABASE "{other_name}"'))
    other = election_engine(url.set(database=other_name).render_as_string(hide_password=False))
    try:
        elsewhere = Leadership(other)
        assert await elsewhere.attempt()
        assert await current_leader(engines[0]) is None
        here = Leadership(engines[0])
        assert await here.attempt()  # the other database's lock is not ours
        assert await current_leader(engines[1]) is not None
        await here.release()
        await elsewhere.release()
    finally:
        await other.dispose()
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{other_name}"'))
        await admin.dispose()
