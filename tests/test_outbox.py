import asyncio
from datetime import timedelta

import pytest

from bot.chat import DeliveryError
from bot.models import Alert, Article, ChatRef, Digest, Level, Verdict
from bot.outbox import Outbox, RetryPolicy
from bot.store import Store

from .fakes import FakeChat, VirtualClock, retry_after


async def add_article(store: Store, article_id: str, score: float = 0.9) -> None:
    article = Article(article_id, f"Title {article_id}", f"Fighting in {article_id}.", "en")
    await store.add_articles([article])
    await store.save_verdicts(
        [Verdict(article_id, True, score, ("fighting",), Level.ALERT, ("X",))]
    )


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def make_outbox(store: Store, chat: FakeChat, clock: VirtualClock, **kwargs: object) -> Outbox:
    return Outbox(store, {chat.platform: chat}, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


async def owe_digests(store: Store, chats: list[ChatRef], key: str = "slot-1") -> None:
    await add_article(store, "a1")
    for chat in chats:
        await store.subscribe(chat, "en")
        await store.enqueue(chat, "digest", key, {"article_ids": ["a1"], "lang": "en"})


async def test_same_key_is_owed_and_sent_once(store: Store, clock: VirtualClock) -> None:
    chat = ChatRef("telegram", "1")
    await add_article(store, "a1")
    assert await store.enqueue(chat, "alert", "story-1", {"article_id": "a1"}) is True
    assert await store.enqueue(chat, "alert", "story-1", {"article_id": "a1"}) is False
    fake = FakeChat(clock=clock)
    outbox = make_outbox(store, fake, clock)
    await outbox.drain()
    await outbox.drain()
    assert len(fake.sent) == 1 and isinstance(fake.sent[0][1], Alert)
    [row] = await store.deliveries()
    assert row["status"] == "sent" and row["attempts"] == 1


async def test_retry_after_pauses_and_nothing_is_lost_or_doubled(
    store: Store, clock: VirtualClock
) -> None:
    chats = [ChatRef("telegram", str(i)) for i in range(10)]
    await owe_digests(store, chats)
    fake = FakeChat(clock=clock)
    start = clock()
    fake.fail_next(retry_after(5))
    await make_outbox(store, fake, clock).drain()
    received = [chat.chat_id for chat, _, _ in fake.sent]
    assert sorted(received) == sorted(c.chat_id for c in chats)
    # The one refused message went out again no sooner than the platform asked.
    assert max(when for _, _, when in fake.sent if when) >= start + timedelta(seconds=5)
    assert all(r["status"] == "sent" for r in await store.deliveries())
    # Waiting as asked is not a failed attempt.
    assert {r["attempts"] for r in await store.deliveries()} == {1}


async def test_blocked_chat_is_deactivated_and_others_still_get_theirs(
    store: Store, clock: VirtualClock
) -> None:
    chats = [ChatRef("telegram", str(i)) for i in range(5)]
    await owe_digests(store, chats)
    fake = FakeChat(clock=clock)
    fake.fail_for["2"] = DeliveryError("Forbidden: bot was blocked by the user", chat_gone=True)
    await make_outbox(store, fake, clock).drain()
    assert sorted(c.chat_id for c, _, _ in fake.sent) == ["0", "1", "3", "4"]
    assert [s.chat.chat_id for s in await store.subscriptions()] == ["0", "1", "3", "4"]
    failed = await store.deliveries("failed")
    assert len(failed) == 1 and "deactivated" in failed[0]["last_error"]
    assert fake.attempts == 5  # never retried
    await store.subscribe(chats[2], "en")  # /start again re-activates
    assert len(await store.subscriptions()) == 5


async def test_migrated_chat_gets_the_message_at_its_new_id(
    store: Store, clock: VirtualClock
) -> None:
    old = ChatRef("telegram", "-42")
    await owe_digests(store, [old])
    fake = FakeChat(clock=clock)
    fake.fail_next(DeliveryError("migrated", migrated_to="-10042"))
    await make_outbox(store, fake, clock).drain()
    assert [c.chat_id for c, _, _ in fake.sent] == ["-10042"]
    assert await store.subscription(old) is None
    assert await store.subscription(ChatRef("telegram", "-10042")) is not None


async def test_transient_errors_back_off_then_give_up_with_reason(
    store: Store, clock: VirtualClock
) -> None:
    chat = ChatRef("telegram", "7")
    await owe_digests(store, [chat])
    fake = FakeChat(clock=clock)
    fake.fail_next(*(DeliveryError("502 Bad Gateway") for _ in range(2)))
    outbox = make_outbox(store, fake, clock, retry=RetryPolicy(max_attempts=3, base_seconds=10))
    start = clock()
    await outbox.drain()
    assert len(fake.sent) == 1
    assert clock() - start >= timedelta(seconds=8 + 16)  # two back-offs, jitter at most -20 %
    [row] = await store.deliveries()
    assert row["status"] == "sent" and row["attempts"] == 3

    other = ChatRef("telegram", "8")
    await store.subscribe(other, "en")
    await store.enqueue(other, "digest", "slot-1", {"article_ids": ["a1"], "lang": "en"})
    fake.fail_for["8"] = TimeoutError("read timed out")
    await outbox.drain()
    [failed] = await store.deliveries("failed")
    assert failed["attempts"] == 3 and "TimeoutError" in failed["last_error"]


async def test_restart_resends_only_what_was_in_flight(store: Store, clock: VirtualClock) -> None:
    chats = [ChatRef("telegram", str(i)) for i in range(6)]
    await owe_digests(store, chats)
    # A process claims every row, delivers two, and dies before recording the rest.
    claimed = await store.claim(clock(), limit=10)
    for row in claimed[:2]:
        await store.mark_sent(row.id, clock(), ["m"], None)
    assert await store.claim(clock()) == []  # the dead process's lease still holds them
    assert await store.release_sending() == 4
    fake = FakeChat(clock=clock)
    await make_outbox(store, fake, clock).drain()
    assert sorted(c.chat_id for c, _, _ in fake.sent) == ["2", "3", "4", "5"]


async def test_a_burst_of_alerts_for_one_chat_is_merged(store: Store, clock: VirtualClock) -> None:
    chat = ChatRef("telegram", "-100")
    await store.subscribe(chat, "en")
    for i in range(8):
        await add_article(store, f"b{i}")
        await store.enqueue(chat, "alert", f"b{i}", {"article_id": f"b{i}", "lang": "en"})
    fake = FakeChat(clock=clock)
    await make_outbox(store, fake, clock).drain()
    assert len(fake.sent) == 1
    [(_, post, _)] = fake.sent
    assert isinstance(post, Digest) and len(post.items) == 8
    assert {r["status"] for r in await store.deliveries()} == {"sent"}


async def test_fan_out_is_paced_to_the_platform_limit(store: Store, clock: VirtualClock) -> None:
    chats = [ChatRef("telegram", str(i)) for i in range(300)]
    await owe_digests(store, chats)
    fake = FakeChat(clock=clock)
    start = clock()
    await make_outbox(store, fake, clock).drain()
    times = sorted(when for _, _, when in fake.sent if when)
    assert len(times) == 300
    for i, first in enumerate(times):
        in_one_second = sum(1 for t in times[i : i + 40] if t < first + timedelta(seconds=1))
        assert in_one_second <= 30
    rate = 300 / (times[-1] - start).total_seconds()
    assert 27 <= rate <= 30


async def test_alert_records_latency_from_article_seen(store: Store, clock: VirtualClock) -> None:
    chat = ChatRef("telegram", "1")
    await add_article(store, "a1")
    await store.enqueue(chat, "alert", "a1", {"article_id": "a1", "lang": "en"})
    fake = FakeChat()
    outbox = Outbox(store, {"telegram": fake})
    await outbox.drain()
    [row] = await store.deliveries("sent")
    assert row["latency_ms"] is not None and 0 <= row["latency_ms"] < 60_000


KILLED_SENDER = """
import asyncio, sys
from bot.models import Limits, Sent
from bot.outbox import Outbox
from bot.store import Store

class SlowPlatform:
    platform = "console"
    limits = Limits(per_second=1000.0)
    async def start(self, handler): ...
    async def stop(self): ...
    async def send(self, chat, post):
        await asyncio.sleep(0.02)
        with open(sys.argv[2], "a") as log:
            log.write(chat.chat_id + "\\n")
        return Sent(("1",))

async def main():
    async with Store.open(sys.argv[1]) as store:
        await Outbox(store, {"console": SlowPlatform()}).drain()

asyncio.run(main())
"""


async def test_sigkill_mid_digest_then_restart_loses_nothing(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import sys
    from pathlib import Path

    url = settings.storage.url()
    log = tmp_path / "received.log"
    chats = [ChatRef("console", f"c{i:03}") for i in range(60)]
    async with Store.open(url) as store:
        await owe_digests(store, chats)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_SENDER, url, str(log), cwd=str(Path(__file__).parents[1])
    )
    try:
        for _ in range(1000):  # until about 40 % of the digest went out, then kill -9
            if log.exists() and len(log.read_text().splitlines()) >= 24:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(process.wait(), 10)
    before = log.read_text().splitlines()
    assert 24 <= len(before) < 60
    async with Store.open(url) as store:
        await store.release_sending()
        fake = FakeChat(platform="console")
        await Outbox(store, {"console": fake}).drain()
        after = [chat.chat_id for chat, _, _ in fake.sent]
        assert {r["status"] for r in await store.deliveries()} == {"sent"}
    received = before + after
    assert sorted(set(received)) == sorted(c.chat_id for c in chats)  # nothing lost
    duplicates = len(received) - len(set(received))
    assert duplicates <= 8  # at most the in-flight sends (the outbox's concurrency)
