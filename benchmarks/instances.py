"""Several instances on one PostgreSQL database: failover, shared-limit throughput, round trips.

    .venv/bin/python benchmarks/instances.py [--chats 300]

Needs the PostgreSQL server ($NEWSBOT_TEST_POSTGRES_URL, else 127.0.0.1:5432; a fresh schema
is made and dropped); Redis (127.0.0.1:6379 or $NEWSBOT_TEST_REDIS_URL) adds a row. Prints:

- failover: SIGKILL of a leader process until a follower with the default 5 s retry leads
  (target < 30 s, the deployment docs' promise);
- delivery throughput to the loopback Bot API (tests/fake_telegram.py over HTTP, 30 msg/s and
  1 msg/s per chat enforced) with 1 vs 3 outboxes, each its own engine, under the one shared
  limit (expected equal, bounded by the platform: targets >= 22.6 msg/s each (90 % of the
  shared book's 25.1, see bot/ratelimit.py SHARED_RATE), 3 within 10 % of 1, 0 x 429; the
  busiest 1 s the Bot API saw is printed too);
- database round trips per delivered message (statements plus transaction begins/commits, all
  engines; the shared limit's booking is one of them);
- the alert-latency histogram as /metrics shows it after the run.
Takes ~70 s.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from benchmarks._common import Targets  # noqa: E402
from bot.chat.telegram import TelegramChat  # noqa: E402
from bot.config import TelegramSettings  # noqa: E402
from bot.leader import Leadership, election_engine  # noqa: E402
from bot.ledger import AlertOwed, DigestOwed  # noqa: E402
from bot.metrics import METRICS  # noqa: E402
from bot.models import Article, ChatRef, Inbound, Level, Post, Verdict  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.ratelimit import SHARED_RATE, DatabaseLimit, RedisLimit, SharedLimit  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:BENCH-token"
POSTGRES_URL = os.environ.get(
    "NEWSBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NEWSBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# 90 % of the shared book's rate (85 % of Telegram's 29.5 msg/s, see bot/ratelimit.py).
TARGET_RATE = 0.9 * SHARED_RATE * 29.5
TARGET_FAILOVER = 30.0


def listening(host: str, port: int) -> bool:
    """Whether something accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def admin(statements: Sequence[str]) -> None:
    """Run statements on the server as the configured (super)user."""
    engine = create_async_engine(POSTGRES_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


async def failover(url: str) -> float:
    """Seconds from SIGKILL of the leader process until a follower (5 s retry) leads."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "leading"
        script = (
            "import asyncio, pathlib\n"
            "from bot.leader import Leadership, election_engine\n"
            "async def main():\n"
            f"    lead = Leadership(election_engine({url!r}))\n"
            "    assert await lead.attempt()\n"
            f"    pathlib.Path({str(ready)!r}).write_text('yes')\n"
            "    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
        engine = election_engine(url)
        stop, leads = asyncio.Event(), asyncio.Event()

        async def changed(leading: bool) -> None:
            if leading:
                leads.set()

        try:
            for _ in range(600):
                if ready.exists() or process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert ready.exists(), "the leader process did not start"
            follower = Leadership(engine, on_change=changed)  # the service's default retry
            running = asyncio.create_task(follower.run(stop))
            await asyncio.sleep(1.0)
            assert not follower.is_leader
            os.kill(process.pid, signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(leads.wait(), 60)
            took = time.monotonic() - killed
            stop.set()
            await running
            return took
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await engine.dispose()


class RoundTrips:
    """Counts statements and transaction begins/commits an engine sends."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, engine: AsyncEngine) -> None:
        def bump(*args: Any, **kwargs: Any) -> None:
            self.count += 1

        for event in ("before_cursor_execute", "begin", "commit", "rollback"):
            sa.event.listen(engine.sync_engine, event, bump)


async def no_replies(message: Inbound) -> Sequence[Post]:
    return []


async def fan_out(
    url: str, senders: int, chats: int, backend: str, trips: RoundTrips
) -> tuple[float, int, int, int, int]:
    """Owe `chats` digests plus an alert each to a tenth of them; send with `senders` outboxes.

    Returns the rate (msg/s from first to last send), 429s seen, messages delivered, the most
    the Bot API received in any 1 s and the slots left unused by sends woken stale."""
    prefix = f"bench-{uuid.uuid4().hex}"
    async with AsyncExitStack() as stack, FakeTelegram(token=TOKEN) as tg:
        outboxes = []
        for n in range(senders):
            store = await stack.enter_async_context(Store.open(url))
            if n == 0:
                await owe(store, chats)
            trips.watch(store.engine)
            # Senders only: none of them is elected to poll.
            adapter = TelegramChat(
                TOKEN,
                TelegramSettings(api_url=tg.base_url),
                part_interval=0.0,
                poll_when_leading=True,
            )
            await adapter.start(no_replies)
            stack.push_async_callback(adapter.stop)
            limiter: SharedLimit
            if backend == "redis":
                limiter = RedisLimit(REDIS_URL, prefix=prefix)
                stack.push_async_callback(limiter.close)
            else:
                limiter = DatabaseLimit(store.engine)
            outboxes.append(
                Outbox(store.ledger, store.subscriptions, {"telegram": adapter}, limiter=limiter)
            )
        expected = chats + chats // 10
        trips.count = 0
        stop = asyncio.Event()
        tasks = [asyncio.create_task(o.run(stop, idle_seconds=0.2)) for o in outboxes]
        try:
            await tg.wait_for_sent(expected, timeout=expected / 20 + 60)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        times = sorted(s.time for s in tg.sent)
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        assert busiest <= 30, busiest
        rate = (len(times) - 1) / (times[-1] - times[0])
        stale = sum(outbox.rebooked for outbox in outboxes)
        return rate, tg.rejected_429, len(tg.sent), busiest, stale


async def owe(store: Store, chats: int) -> None:
    """A digest for every chat, and an alert (article seen just now) for every tenth."""
    await store.catalog.add_articles([Article("d1", "Shelling", "Fighting at the border.", "en")])
    await store.catalog.add_articles(
        [Article("b1", "Breaking", "Troops crossed the border.", "en")]
    )
    await store.catalog.save_verdicts(
        [
            Verdict("d1", True, 0.6, ("fighting",), Level.DIGEST, ("X",)),
            Verdict("b1", True, 0.9, ("troops",), Level.ALERT, ("X",)),
        ]
    )
    for n in range(chats):
        chat = ChatRef("telegram", str(10_000 + n))
        await store.subscriptions.subscribe(chat, "en")
        await store.ledger.enqueue(chat, "slot", DigestOwed(("d1",)))
        if n % 10 == 0:
            await store.ledger.enqueue(chat, "b1", AlertOwed("b1"))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=300)
    args = parser.parse_args()
    server = sa.make_url(POSTGRES_URL)
    if not listening(server.host or "127.0.0.1", server.port or 5432):
        print(f"SKIPPED: no PostgreSQL server at {server.host}:{server.port or 5432}")
        return 0
    targets = Targets()
    failed = await failover(POSTGRES_URL)
    print(f"failover after SIGKILL of the leader: {failed:.1f} s (follower retry 5 s)")
    targets.check("failover", failed < TARGET_FAILOVER, f"{failed:.1f} s", f"< {TARGET_FAILOVER} s")

    redis_parts = urlsplit(REDIS_URL)
    backends = ["postgresql"]
    if listening(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379):
        backends.append("redis")
    else:
        print(f"(no Redis at {REDIS_URL}: the Redis rows are skipped)")
    rates: dict[tuple[str, int], float] = {}
    for backend in backends:
        for senders in (1, 3):
            # A fresh schema per run: a role whose search_path is its own schema.
            name = f"nbbench_{os.getpid()}_{backend[0]}{senders}"
            await admin(
                [
                    f"DROP SCHEMA IF EXISTS {name} CASCADE",
                    f"DROP ROLE IF EXISTS {name}",
                    f"CREATE ROLE {name} SUPERUSER LOGIN",
                    f"CREATE SCHEMA {name} AUTHORIZATION {name}",
                    f"ALTER ROLE {name} SET search_path = {name}",
                ]
            )
            url = server.set(username=name).render_as_string(hide_password=False)
            trips = RoundTrips()
            try:
                rate, rejected, sent, busiest, stale = await fan_out(
                    url, senders, args.chats, backend, trips
                )
            finally:
                await admin(
                    [
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        f" WHERE usename = '{name}' AND pid <> pg_backend_pid()",
                        f"DROP SCHEMA IF EXISTS {name} CASCADE",
                        f"DROP ROLE IF EXISTS {name}",
                    ]
                )
            rates[backend, senders] = rate
            per_message = trips.count / sent
            print(
                f"{senders} instance(s), limit via {backend}: {rate:.1f} msg/s, {sent} messages,"
                f" {rejected} x 429, busiest 1 s {busiest}, {stale} stale slots re-booked,"
                f" {per_message:.1f} database round trips per message"
            )
            label = f"{senders} instance(s) via {backend}"
            wanted = f">= {TARGET_RATE:.1f}"
            targets.check(f"{label} rate", rate >= TARGET_RATE, f"{rate:.1f}", wanted)
            targets.check(f"{label} 429s", rejected == 0, str(rejected), "0")
        one, three = rates[backend, 1], rates[backend, 3]
        print(f"3 vs 1 instance via {backend}: {three / one:.2f} x (expected 1.0, platform-bound)")
        targets.check(
            f"3 vs 1 instance via {backend}",
            abs(three / one - 1.0) <= 0.10,
            f"{three / one:.2f} x",
            "within 10 % of 1.0",
        )
    print("alert latency as /metrics shows it (all runs):")
    for line in METRICS.exposition().decode().splitlines():
        if line.startswith("newsbot_alert_latency_seconds"):
            print(f"  {line}")
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
