import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.models import Article, ChatRef, Level, Verdict
from bot.store import MIGRATIONS, IngestCounts, Store, normalise_url

from .conftest import POSTGRES_URL, postgres_available


def art(id: str, text: str = "Fighting continued.", title: str = "T") -> Article:
    return Article(id=id, title=title, text=text, lang="en", source="test")


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[Store]:
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
            ):
                await conn.execute(sa.text(f"DELETE FROM {table}"))
        yield pg


async def test_add_is_idempotent_and_dedupes_content(any_store: Store) -> None:
    counts, changed = await any_store.add_articles([art("a"), art("b", "Other text.")])
    assert counts == IngestCounts(new=2) and len(changed) == 2
    counts, changed = await any_store.add_articles([art("a"), art("b", "Other text.")])
    assert counts == IngestCounts(duplicate=2) and changed == []
    # The same content under another id is stored once.
    counts, _ = await any_store.add_articles([art("c", "Fighting   continued.")])
    assert counts == IngestCounts(duplicate=1)
    # Same id, new content: an update.
    counts, changed = await any_store.add_articles([art("a", "Fighting continued, 3 dead.")])
    assert counts == IngestCounts(updated=1) and [a.id for a in changed] == ["a"]
    stored = await any_store.get_article("a")
    assert stored is not None and stored.text == "Fighting continued, 3 dead."
    assert await any_store.count_articles() == 2


async def test_duplicates_inside_one_batch(any_store: Store) -> None:
    counts, _ = await any_store.add_articles([art("a"), art("a2")])
    assert counts == IngestCounts(new=1, duplicate=1)


@pytest.mark.reliability
async def test_a_corrected_record_later_in_one_batch_wins(any_store: Store) -> None:
    first, fixed = art("a", "Fighting continued."), art("a", "Fighting continued, 3 dead.")
    counts, changed = await any_store.add_articles([first, fixed, art("b", "Other.")])
    assert counts == IngestCounts(new=2, duplicate=1)
    assert [a.text for a in changed] == ["Fighting continued, 3 dead.", "Other."]
    stored = await any_store.get_article("a")
    assert stored is not None and stored.text == "Fighting continued, 3 dead."
    # Text and hash agree: the corrected record is a duplicate of itself, the old one a change.
    assert (await any_store.add_articles([fixed]))[0] == IngestCounts(duplicate=1)
    assert (await any_store.add_articles([first]))[0] == IngestCounts(updated=1)


@pytest.mark.reliability
async def test_bad_records_are_cleaned_or_rejected_alone(
    any_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    long_date = "Wednesday, 12 Jan 2022 08:00:00 +0000 (Coordinated)"
    assert len(long_date) == 51
    batch = [
        art("good", "Troops crossed the border."),
        dataclasses.replace(art("dated", "Shelling overnight."), published=long_date),
        dataclasses.replace(art("junk-date", "Air strikes."), published="x" * 51),
        art("nul", "Rockets\u0000 hit the port.", title="Port\u0000 attack"),
        art("surrogate", "Drone \ud800 strike."),
        art("x" * 201, "An id too long for the column."),
        dataclasses.replace(art("lang", "Sanctions."), lang="not-a-language"),
    ]
    with caplog.at_level(logging.WARNING):
        counts, changed = await any_store.add_articles(batch)
    assert counts == IngestCounts(new=5, rejected=2)
    assert {a.id for a in changed} == {"good", "dated", "junk-date", "nul", "surrogate"}
    rejections = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejections) == 2
    assert any("id: 201 characters" in m for m in rejections)
    assert any("lang:" in m for m in rejections)
    dated = await any_store.get_article("dated")
    assert dated is not None and dated.published == "2022-01-12T08:00:00+00:00"
    undated = await any_store.get_article("junk-date")
    assert undated is not None and undated.published is None
    nul = await any_store.get_article("nul")
    assert nul is not None and nul.text == "Rockets hit the port." and nul.title == "Port attack"
    surrogate = await any_store.get_article("surrogate")
    assert surrogate is not None and surrogate.text == "Drone ? strike."


async def test_verdicts_and_flagged(any_store: Store) -> None:
    await any_store.add_articles([art("a"), art("b", "x"), art("c", "y")])
    await any_store.save_verdicts(
        [
            Verdict("a", True, 0.9, ("troops",), Level.ALERT, ("Ukraine",)),
            Verdict("b", False, 0.1, (), Level.IGNORE, ()),
            Verdict("c", True, 0.6, ("Krieg",), Level.DIGEST, ()),
        ]
    )
    flagged = await any_store.flagged(0.5)
    assert [(a.id, v.level) for a, v, _ in flagged] == [("a", Level.ALERT), ("c", Level.DIGEST)]
    assert flagged[0][1].reasons == ("troops",) and flagged[0][1].topics == ("Ukraine",)
    assert await any_store.flagged(0.5, since=datetime.now(UTC) + timedelta(seconds=1)) == []
    assert (await any_store.scores())["b"] == pytest.approx(0.1)


async def test_subscriptions(any_store: Store) -> None:
    chat = ChatRef("telegram", "42")
    topic = ChatRef("telegram", "42", "7")
    assert await any_store.subscribe(chat, "de") is True
    assert await any_store.subscribe(chat, "de") is False
    assert await any_store.subscribe(topic, "en") is True
    assert [s.chat for s in await any_store.subscriptions()] == [chat, topic]
    assert await any_store.unsubscribe(chat) is True
    assert await any_store.unsubscribe(chat) is False
    sub = await any_store.subscription(chat)
    assert sub is not None and not sub.active and sub.lang == "de"
    assert await any_store.subscribe(chat, "de") is True
    when = datetime(2026, 1, 1, 8, tzinfo=UTC)
    await any_store.mark_digest(sub.id, when)
    again = await any_store.subscription(chat)
    assert again is not None and again.last_digest_at == when


async def test_feedback_majority(any_store: Store) -> None:
    await any_store.add_articles([art("a"), art("b", "x")])
    chat = ChatRef("slack", "C1")
    await any_store.add_feedback("a", chat, "u1", True)
    await any_store.add_feedback("a", chat, "u1", False)  # changed their mind
    await any_store.add_feedback("a", chat, "u2", False)
    await any_store.add_feedback("b", chat, "u1", True)
    examples = {a.id: relevant for a, relevant in await any_store.feedback_examples()}
    assert examples == {"a": False, "b": True}


async def test_verdicts_of_a_huge_batch_are_stored(any_store: Store) -> None:
    from bot.store import articles

    # More than PostgreSQL's 32,767 parameters of one statement.
    count = 33_000
    now = datetime.now(UTC)
    rows = [
        {"id": f"a{n}", "content_hash": f"h{n}", "title": "T", "text": "x", "lang": "en"}
        for n in range(count)
    ]
    async with any_store.engine.begin() as conn:
        await conn.execute(articles.insert(), [dict(r, seen_at=now) for r in rows])
    batch = [Verdict(f"a{n}", True, 0.9, ("r",), Level.ALERT, ()) for n in range(count)]
    await any_store.save_verdicts(batch)
    await any_store.save_verdicts(batch[:10])  # replaced, not added
    assert len(await any_store.scores()) == count


async def test_claim_takes_alerts_first_then_by_id_and_lapsed_leases(any_store: Store) -> None:
    store = any_store
    now = datetime.now(UTC) + timedelta(minutes=1)
    chats = [ChatRef("telegram", str(n)) for n in range(6)]
    owed: list[tuple[ChatRef, str, str, dict[str, Any], datetime | None]] = [
        (chat, "digest", "slot", {"n": n}, None) for n, chat in enumerate(chats)
    ]
    owed += [(chats[4], "alert", "a4", {}, None), (chats[5], "alert", "a5", {}, None)]
    # Held (quiet hours) and owed on another platform: not due here.
    owed += [(chats[0], "alert", "held", {}, now + timedelta(hours=1))]
    owed += [(ChatRef("slack", "C1"), "alert", "elsewhere", {}, None)]
    assert await store.enqueue_many(owed) == 10
    first = await store.claim(now, limit=3, lease=30, platforms=["telegram"])
    assert [(d.kind, d.key, d.chat.chat_id) for d in first] == [
        ("alert", "a4", "4"),
        ("alert", "a5", "5"),
        ("digest", "slot", "0"),
    ]
    second = await store.claim(now, limit=10, platforms=["telegram"])
    assert [d.chat.chat_id for d in second] == ["1", "2", "3", "4", "5"]
    # The first sender died: its rows are due again once its lease ran out, alerts first.
    lapsed = await store.claim(now + timedelta(seconds=31), limit=2, platforms=["telegram"])
    assert [d.key for d in lapsed] == ["a4", "a5"]
    # Then the first sender's digest; not the held alert, nor rows whose lease still runs.
    rest = await store.claim(now + timedelta(seconds=31), platforms=["telegram"])
    assert [d.id for d in rest] == [first[2].id]


async def test_schema_is_versioned_and_reopening_keeps_data(settings) -> None:  # type: ignore[no-untyped-def]
    url = settings.storage.url()
    async with Store.open(url) as first:
        await first.add_articles([art("keep")])
        assert await first.migrate() == len(MIGRATIONS)
    async with Store.open(url) as second:
        assert await second.get_article("keep") is not None
        async with second.engine.connect() as conn:
            versions = (
                (await conn.execute(sa.text("SELECT version FROM schema_version"))).scalars().all()
            )
        assert list(versions) == list(range(1, len(MIGRATIONS) + 1))


def test_normalise_url() -> None:
    assert normalise_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalise_url("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
