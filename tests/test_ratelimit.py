import asyncio
import bisect
import itertools
import os
import socket
import sys
import time
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import pytest

from bot.chat.telegram import TelegramChat
from bot.config import TelegramSettings
from bot.ledger import AlertOwed, DigestOwed
from bot.models import ChatRef, Inbound, Limits, Post
from bot.outbox import Outbox
from bot.ratelimit import SHARED_RATE, DatabaseLimit, RedisLimit, SharedLimit, chat_gap
from bot.store import Store

from .conftest import ROOT
from .fake_telegram import FakeTelegram
from .test_outbox import add_article

# `database` (conftest): a fresh PostgreSQL schema for each test.
pytestmark = [
    pytest.mark.reliability,
    pytest.mark.postgres,
    pytest.mark.parametrize("database", ["postgresql"], indirect=True),
]

REDIS_URL = os.environ.get("NEWSBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TOKEN = "123456:TEST-token"
LIMITS = Limits(per_second=29.5, chat_interval=1.05, group_per_minute=20, group_prefix="-")


def redis_available() -> bool:
    """Whether something listens on the Redis test server's port."""
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["postgresql", "redis"])
async def limiter(request: pytest.FixtureRequest, database: str) -> AsyncIterator[SharedLimit]:
    """A shared limit on a fresh PostgreSQL schema or under a fresh Redis key prefix."""
    if request.param == "redis":
        if not redis_available():
            pytest.skip(f"Redis half skipped: no server at {REDIS_URL} (NEWSBOT_TEST_REDIS_URL)")
        redis_limit = RedisLimit(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}")
        yield redis_limit
        await redis_limit.close()
        return
    async with Store.open(database) as store:
        yield DatabaseLimit(store.engine)


async def test_slots_are_spaced_by_the_platform_and_the_chat_limit(limiter: SharedLimit) -> None:
    chats = [ChatRef("telegram", str(n)) for n in range(1, 31)]
    slots = []
    for chat in chats:
        slot = await limiter.book(chat, LIMITS, horizon=5.0)
        assert slot.booked
        slots.append(time.monotonic() + slot.wait)
    # Thirty chats booked at once: one every 1/(SHARED_RATE x 29.5) s on the server's clock
    # (seen from here through the jitter of each round trip on a busy machine).
    rate = 29.5 * SHARED_RATE
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 1 / rate - 0.03, gaps
    assert 29 / rate - 0.1 <= slots[-1] - slots[0] <= 29 / rate + 0.1, gaps
    # The first chat again: its own 1.05 s interval, not merely the next platform slot.
    again = await limiter.book(chats[0], LIMITS, horizon=5.0)
    if not again.booked:  # the chat may not send at the platform's next slot: ask when it may
        await asyncio.sleep(again.wait)
        again = await limiter.book(chats[0], LIMITS, horizon=5.0)
    assert again.booked and time.monotonic() + again.wait - slots[0] >= 1.05 - 0.05
    # A group's slot: 60/20 = 3 s apart.
    group = ChatRef("telegram", "-100")
    assert chat_gap(LIMITS, group) == 3.0
    first = await limiter.book(group, LIMITS, horizon=5.0)
    assert first.booked
    second = await limiter.book(group, LIMITS, horizon=5.0)
    assert not second.booked and second.wait >= 3.0 - first.wait - 0.05


async def test_a_chat_not_ready_leaves_the_platforms_next_slots_to_other_chats(
    limiter: SharedLimit,
) -> None:
    # Before: the second booking for chat 1 took its own slot 1.05 s on and moved the
    # platform's cursor past it, so chat 2 waited ~1.09 s and 27 platform slots went unused.
    gap = 1 / (29.5 * SHARED_RATE)
    busy, other = ChatRef("telegram", "1"), ChatRef("telegram", "2")
    first = await limiter.book(busy, LIMITS, horizon=5.0)
    assert first.booked and first.wait < 0.1
    again = await limiter.book(busy, LIMITS, horizon=5.0)
    # Not booked: the wait is the chat's own, until it may send again.
    assert not again.booked and 1.05 - 0.2 <= again.wait <= 1.05
    # The platform's next slot is still one gap after the first (seen through a round trip
    # or two on a busy machine), not after the busy chat's.
    nxt = await limiter.book(other, LIMITS, horizon=5.0)
    assert nxt.booked and nxt.wait <= gap, nxt
    # Thirty chats in a row fill the platform's slots one gap apart from there.
    waits = [(await limiter.book(ChatRef("telegram", str(10 + n)), LIMITS, 5.0)) for n in range(30)]
    assert all(w.booked for w in waits)
    assert waits[-1].wait <= 31 * gap, waits[-1]


async def test_a_slot_beyond_the_horizon_is_not_booked(limiter: SharedLimit) -> None:
    # The platform's next slot is 1 s away (a retry-after): too far for a 0.5 s horizon.
    await limiter.pause("telegram", 1.0)
    chat = ChatRef("telegram", "7")
    far = await limiter.book(chat, LIMITS, horizon=0.5)
    assert not far.booked and 0.7 <= far.wait <= 1.0
    # Not taken: asking again finds the same slot.
    near = await limiter.book(chat, LIMITS, horizon=0.5)
    assert not near.booked and abs(near.wait - far.wait) < 0.1
    # A wider horizon takes it.
    wide = await limiter.book(chat, LIMITS, horizon=5.0)
    assert wide.booked and 0.6 <= wide.wait <= 1.0
    # The chat's own next slot (~1.05 s after that one) is not taken either.
    assert not (await limiter.book(chat, LIMITS, horizon=0.5)).booked


async def test_a_pause_holds_every_chat_and_a_late_start_pushes_the_next_slot(
    limiter: SharedLimit,
) -> None:
    await limiter.pause("telegram", 3.0)
    held = await limiter.book(ChatRef("telegram", "1"), LIMITS, horizon=10.0)
    assert held.booked and 2.7 <= held.wait <= 3.05
    # Other platforms are not held.
    assert (await limiter.book(ChatRef("slack", "C1"), LIMITS, horizon=10.0)).wait < 0.1
    chat = ChatRef("slack", "C2")
    await limiter.late(chat, LIMITS)
    # 1.05 s after `late` on the server, less the time this machine took to ask again.
    assert (await limiter.book(chat, LIMITS, horizon=10.0)).wait >= 1.05 - 0.5


async def no_replies(message: Inbound) -> Sequence[Post]:
    return []


class Freezes:
    """A machine so busy that no sender runs for `length` s every `every` s: wake-ups due in
    a freeze come at its end (the shared server's clock goes on meanwhile)."""

    def __init__(self, every: float, length: float) -> None:
        self.every, self.length = every, length
        self.start = time.monotonic()
        self.late_wakes = 0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        phase = (time.monotonic() - self.start) % self.every
        if phase < self.length:
            self.late_wakes += 1
            await asyncio.sleep(self.length - phase)


async def test_senders_woken_late_by_a_stall_never_overfill_the_platforms_window(
    database: str, limiter: SharedLimit
) -> None:
    # CPU starvation on a saturated machine: every sender wakes 0-400 ms after the slots it
    # booked. Sent then, those sends joined the 1 s window that the fresh slots booked right
    # after the stall filled: 429 from the platform's global limit.
    chats = [ChatRef("telegram", str(3_000 + n)) for n in range(150)]
    twice = chats[:10]  # a second message for some chats: the per-chat limit too
    async with Store.open(database) as store, FakeTelegram(token=TOKEN) as tg:
        await add_article(store, "a1")
        for chat in chats:
            await store.subscriptions.subscribe(chat, "en")
            await store.ledger.enqueue(chat, "slot-1", DigestOwed(("a1",)))
        for chat in twice:
            await store.ledger.enqueue(chat, "slot-2", DigestOwed(("a1",)))
        adapters = [
            TelegramChat(
                TOKEN,
                TelegramSettings(api_url=tg.base_url),
                request=tg.request(),
                get_updates_request=tg.request(),
                part_interval=0.0,
                poll_when_leading=True,  # a sender only: never polls
            )
            for _ in range(4)
        ]
        for adapter in adapters:
            await adapter.start(no_replies)
        freezes = Freezes(every=1.5, length=0.4)
        outboxes = [
            Outbox(
                store.ledger,
                store.subscriptions,
                {"telegram": adapter},
                sleep=freezes.sleep,
                limiter=limiter,
            )
            for adapter in adapters
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(outbox.run(stop, idle_seconds=0.2)) for outbox in outboxes]
        try:
            await tg.wait_for_sent(len(chats) + len(twice), timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for adapter in adapters:
                await adapter.stop()
        rows = await store.ledger.deliveries()
    assert tg.rejected_429 == 0, (tg.rejected_kinds, tg.rejections)
    times = sorted(s.time for s in tg.sent)
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert busiest <= 30, busiest
    # Nothing lost, nothing twice.
    expected = sorted(int(c.chat_id) for c in chats + twice)
    assert sorted(s.chat_id for s in tg.sent) == expected
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == len(expected)
    assert sum(outbox.sent > 0 for outbox in outboxes) >= 2  # several shared the work
    # The stalls did strike sends waiting for their slots, which booked fresh ones.
    assert freezes.late_wakes > 0 and sum(outbox.rebooked for outbox in outboxes) > 0
    took = times[-1] - times[0]
    print(
        f"{len(tg.sent)} in {took:.1f} s, {len(outboxes)} senders through stalls: busiest"
        f" {busiest}/s, {freezes.late_wakes} late wake-ups,"
        f" {sum(o.rebooked for o in outboxes)} fresh slots"
    )


SENDER = """
import asyncio, sys
from bot.chat.telegram import TelegramChat
from bot.config import TelegramSettings
from bot.outbox import Outbox
from bot.ratelimit import DatabaseLimit, RedisLimit
from bot.store import Store

async def no_replies(message):
    return []

async def main(url, api, backend, redis_url, prefix):
    async with Store.open(url) as store:
        adapter = TelegramChat(
            "123456:TEST-token", TelegramSettings(api_url=api), part_interval=0.0,
            poll_when_leading=True,  # a sender only: never elected to poll
        )
        await adapter.start(no_replies)
        if backend == "redis":
            limiter = RedisLimit(redis_url, prefix)
        else:
            limiter = DatabaseLimit(store.engine)
        outbox = Outbox(store.ledger, store.subscriptions, {"telegram": adapter}, limiter=limiter)
        stop = asyncio.Event()
        running = asyncio.create_task(outbox.run(stop, idle_seconds=0.2))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        await running
        await limiter.close()
        await adapter.stop()
        print(f"sent {outbox.sent}", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("backend", ["postgresql", "redis"])
async def test_three_sender_processes_share_one_platform_limit(database: str, backend: str) -> None:
    if backend == "redis" and not redis_available():
        pytest.skip(f"Redis half skipped: no server at {REDIS_URL} (NEWSBOT_TEST_REDIS_URL)")
    chats = [ChatRef("telegram", str(1_000 + n)) for n in range(150)]
    prefix = f"test-{uuid.uuid4().hex}"
    async with Store.open(database) as store, FakeTelegram(token=TOKEN) as tg:
        await add_article(store, "a1")
        await add_article(store, "breaking")
        for chat in chats:
            await store.subscriptions.subscribe(chat, "en")
            await store.ledger.enqueue(chat, "slot", DigestOwed(("a1",)))
        # Three senders, as three instances with delivery.senders = "all" are: own processes,
        # engines, adapters and event loops; one shared book of slots.
        senders = [
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", SENDER, database, tg.base_url, backend, REDIS_URL, prefix),
                stdin=PIPE,
                stdout=PIPE,
                cwd=ROOT,
            )
            for _ in range(3)
        ]
        try:
            for sender in senders:
                assert sender.stdout is not None
                assert (await asyncio.wait_for(sender.stdout.readline(), 60)).strip() == b"ready"
            started = time.monotonic()
            # An alert owed mid-fan-out reaches its chat too, once.
            await tg.wait_for_sent(40, timeout=60)
            await store.ledger.enqueue(chats[0], "b", AlertOwed("breaking"))
            await tg.wait_for_sent(len(chats) + 1, timeout=90)
            took = time.monotonic() - started
            shares = []
            for sender in senders:
                out, _ = await asyncio.wait_for(sender.communicate(b""), 30)
                shares.append(int(out.decode().split()[-1]))
        finally:
            for sender in senders:
                if sender.returncode is None:
                    sender.kill()
                    await sender.wait()
        rows = await store.ledger.deliveries()
    assert tg.rejected_429 == 0, (tg.rejected_kinds, tg.rejections)
    assert sorted(s.chat_id for s in tg.sent) == sorted(
        [int(c.chat_id) for c in chats] + [int(chats[0].chat_id)]
    )
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == len(chats) + 1
    # Every process sent a share; together never faster than the platform allows.
    assert all(share > 0 for share in shares) and sum(shares) == len(chats) + 1, shares
    times = sorted(s.time for s in tg.sent)
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert busiest <= 30
    assert took >= (len(chats) + 1) / 30 - 1
    print(f"3 sender processes via {backend}: {len(tg.sent)} in {took:.1f} s, busiest {busiest}/s")
