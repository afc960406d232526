import asyncio
import json
from datetime import UTC, datetime, timedelta

from bot.ledger import AlertOwed, DigestOwed, Lease, NoticeOwed, decode, encode
from bot.models import Article, ChatRef, Level, Verdict
from bot.schema import deliveries
from bot.store import Store

CHAT = ChatRef("telegram", "42")
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


async def owe(store: Store, n: int) -> None:
    for i in range(n):
        await store.ledger.enqueue(CHAT, f"s{i}", AlertOwed(f"a{i}"))


async def test_a_key_is_owed_once(store: Store) -> None:
    assert await store.ledger.enqueue(CHAT, "s1", AlertOwed("a1")) is True
    assert await store.ledger.enqueue(CHAT, "s1", AlertOwed("a2")) is False
    owed = [(CHAT, "s1", AlertOwed("a3"), None), (CHAT, "s2", AlertOwed("a4"), None)]
    assert await store.ledger.enqueue_many(owed) == 1
    assert [r["key"] for r in await store.ledger.deliveries("pending")] == ["s1", "s2"]


async def test_a_claimed_row_is_taken_again_only_after_its_lease(store: Store) -> None:
    ledger = store.ledger
    await owe(store, 3)
    claimed = await ledger.claim(T0, limit=2, lease=60)
    assert [r.key for r in claimed] == ["s0", "s1"]
    assert [r.key for r in await ledger.claim(T0 + timedelta(seconds=59))] == ["s2"]
    assert await ledger.claim(T0 + timedelta(seconds=59)) == []
    # The sender of s0 and s1 died: after their lease they are due again (s2's still holds).
    again = await ledger.claim(T0 + timedelta(seconds=61), lease=60)
    assert [r.id for r in again] == [r.id for r in claimed]


async def test_outcomes_of_claimed_rows(store: Store) -> None:
    ledger = store.ledger
    await owe(store, 4)
    sent, retried, failed, released = await ledger.claim(T0, lease=60)
    await ledger.mark_sent(sent.id, T0, ["m1", "m2"], 1500)
    await ledger.mark_retry(retried.id, "HTTP 502", T0 + timedelta(seconds=5), parts=(1, ["m9"]))
    await ledger.mark_failed(failed.id, "Forbidden")
    await ledger.release([released.id], None)
    rows = {r["key"]: r for r in await ledger.deliveries()}
    assert (rows["s0"]["status"], rows["s0"]["message_ids"], rows["s0"]["latency_ms"]) == (
        "sent",
        '["m1", "m2"]',
        1500,
    )
    assert (rows["s1"]["status"], rows["s1"]["attempts"], rows["s1"]["parts_sent"]) == (
        "pending",
        1,
        1,
    )
    assert (rows["s2"]["status"], rows["s2"]["last_error"]) == ("failed", "Forbidden")
    assert (rows["s3"]["status"], rows["s3"]["attempts"]) == ("pending", 0)
    assert all(r["lease_until"] is None for r in rows.values())
    # A retry is due at its time and resumes after the acknowledged part.
    assert [r.key for r in await ledger.claim(T0 + timedelta(seconds=1))] == ["s3"]
    [resumed] = await ledger.claim(T0 + timedelta(seconds=6))
    assert (resumed.key, resumed.parts_sent, resumed.message_ids) == ("s1", 1, ("m9",))
    assert await ledger.article_for_message(CHAT, "m2") == "a0"
    assert await ledger.article_for_message(CHAT, "m9") is None  # not sent (yet)


async def test_compose_rebuilds_the_post_from_the_catalog(store: Store) -> None:
    article = Article("a0", "Troops cross the border", "Troops crossed the border.", "en")
    await store.catalog.add_articles([article])
    await store.catalog.save_verdicts([Verdict("a0", True, 0.9, ("troops",), Level.ALERT, ())])
    await owe(store, 2)  # a1 is not stored
    first, second = await store.ledger.claim(T0)
    alert, missing = await store.ledger.compose([[first], [second]], T0)
    assert alert is not None and missing is None
    assert alert.item.article_id == "a0"  # type: ignore[union-attr]


async def test_prune_keeps_what_is_still_owed(store: Store) -> None:
    ledger = store.ledger
    await owe(store, 2)
    done, _ = await ledger.claim(T0)
    await ledger.mark_sent(done.id, T0, ["m"], None)
    assert await ledger.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert [r["key"] for r in await ledger.deliveries()] == ["s1"]


async def test_a_lease_is_renewed_while_held_and_no_more_once_released(store: Store) -> None:
    ledger = store.ledger
    await owe(store, 3)
    rows = await ledger.claim(T0, lease=60)
    now = T0
    ticks: asyncio.Queue[None] = asyncio.Queue()
    slept: list[float] = []

    async def tick(seconds: float) -> None:
        slept.append(seconds)
        await ticks.get()

    async def renewed(count: int) -> None:
        async with asyncio.timeout(10):
            while lease.renewals < count:  # noqa: ASYNC110 - the renewal writes, then counts
                await asyncio.sleep(0)

    async with Lease(ledger, rows, 60, lambda: now, sleep=tick) as lease:
        now = T0 + timedelta(seconds=50)
        lease.done([rows[0].id])  # finished with that one: it is not kept
        ticks.put_nowait(None)
        await renewed(1)
        assert slept[0] == 20  # every third of the lease
        # Past the first lease, only the row no longer held can be claimed by anyone else.
        assert [r.id for r in await ledger.claim(T0 + timedelta(seconds=61))] == [rows[0].id]
        assert await ledger.claim(T0 + timedelta(seconds=109)) == []
    ticks.put_nowait(None)
    await asyncio.sleep(0)
    assert lease.renewals == 1  # the renewals ended with the hold
    again = await ledger.claim(T0 + timedelta(seconds=111))
    assert [r.id for r in again] == [r.id for r in rows[1:]]


def test_what_is_owed_round_trips_and_unknown_kinds_read_as_nothing() -> None:
    since = datetime(2026, 3, 1, 7, tzinfo=UTC)
    for owed in (
        AlertOwed("a1", "de"),
        DigestOwed(("a1", "a2"), since, "uk"),
        DigestOwed(()),
        NoticeOwed("Keine neuen Meldungen", "de"),
    ):
        assert decode(owed.kind, encode(owed)) == owed
    assert decode("poll", "{}") is None  # a kind a newer version added
    assert decode("alert", "{}") is None and decode("alert", "[1]") is None


async def test_rows_written_by_earlier_versions_read_as_typed_records(store: Store) -> None:
    # Payloads exactly as versions before the typed records wrote them (jobs.py built the dicts).
    since = "2026-03-01T07:00:00+00:00"
    old = [
        ("alert", "s1", {"article_id": "a1", "lang": "de"}),
        ("digest", "slot", {"article_ids": ["a1"], "since": since, "lang": "en", "text": "x"}),
        ("notice", "slot2", {"article_ids": [], "since": since, "lang": "de", "text": "Nichts."}),
    ]
    async with store.engine.begin() as conn:
        await conn.execute(
            deliveries.insert(),
            [
                {
                    "platform": CHAT.platform,
                    "chat_id": CHAT.chat_id,
                    "thread_id": "",
                    "kind": kind,
                    "key": key,
                    "status": "pending",
                    "payload": json.dumps(payload),
                    "created_at": T0,
                }
                for kind, key, payload in old
            ],
        )
    rows = await store.ledger.claim(T0 + timedelta(seconds=1))
    assert [r.owed for r in rows] == [
        AlertOwed("a1", "de"),
        DigestOwed(("a1",), datetime.fromisoformat(since), "en"),
        NoticeOwed("Nichts.", "de"),
    ]


async def test_claim_takes_alerts_first_then_by_id_and_lapsed_leases(store: Store) -> None:
    ledger = store.ledger
    now = datetime.now(UTC) + timedelta(minutes=1)
    chats = [ChatRef("telegram", str(n)) for n in range(6)]
    owed: list[tuple[ChatRef, str, AlertOwed | DigestOwed, datetime | None]] = [
        (chat, "slot", DigestOwed((f"d{n}",)), None) for n, chat in enumerate(chats)
    ]
    owed += [(chats[4], "a4", AlertOwed("x4"), None), (chats[5], "a5", AlertOwed("x5"), None)]
    # Held (quiet hours) and owed on another platform: not due here.
    owed += [(chats[0], "held", AlertOwed("x0"), now + timedelta(hours=1))]
    owed += [(ChatRef("slack", "C1"), "elsewhere", AlertOwed("x9"), None)]
    assert await ledger.enqueue_many(owed) == 10
    first = await ledger.claim(now, limit=3, lease=30, platforms=["telegram"])
    assert [(d.kind, d.key, d.chat.chat_id) for d in first] == [
        ("alert", "a4", "4"),
        ("alert", "a5", "5"),
        ("digest", "slot", "0"),
    ]
    second = await ledger.claim(now, limit=10, platforms=["telegram"])
    assert [d.chat.chat_id for d in second] == ["1", "2", "3", "4", "5"]
    # The first sender died: its rows are due again once its lease ran out, alerts first.
    lapsed = await ledger.claim(now + timedelta(seconds=31), limit=2, platforms=["telegram"])
    assert [d.key for d in lapsed] == ["a4", "a5"]
    # Then the first sender's digest; not the held alert, nor rows whose lease still runs.
    rest = await ledger.claim(now + timedelta(seconds=31), platforms=["telegram"])
    assert [d.id for d in rest] == [first[2].id]
