import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.catalog import IngestCounts
from bot.models import Article, ChatRef, Level, Verdict
from bot.store import Store


def art(id: str, text: str = "Fighting continued.", title: str = "T") -> Article:
    return Article(id=id, title=title, text=text, lang="en", source="test")


async def test_add_is_idempotent_and_dedupes_content(store: Store) -> None:
    counts, changed = await store.catalog.add_articles([art("a"), art("b", "Other text.")])
    assert counts == IngestCounts(new=2) and len(changed) == 2
    counts, changed = await store.catalog.add_articles([art("a"), art("b", "Other text.")])
    assert counts == IngestCounts(duplicate=2) and changed == []
    # The same content under another id is stored once.
    counts, _ = await store.catalog.add_articles([art("c", "Fighting   continued.")])
    assert counts == IngestCounts(duplicate=1)
    # Same id, new content: an update.
    counts, changed = await store.catalog.add_articles([art("a", "Fighting continued, 3 dead.")])
    assert counts == IngestCounts(updated=1) and [a.id for a in changed] == ["a"]
    stored = await store.catalog.get_article("a")
    assert stored is not None and stored.text == "Fighting continued, 3 dead."
    assert await store.catalog.count_articles() == 2


async def test_duplicates_inside_one_batch(store: Store) -> None:
    counts, _ = await store.catalog.add_articles([art("a"), art("a2")])
    assert counts == IngestCounts(new=1, duplicate=1)


@pytest.mark.reliability
async def test_a_corrected_record_later_in_one_batch_wins(store: Store) -> None:
    first, fixed = art("a", "Fighting continued."), art("a", "Fighting continued, 3 dead.")
    counts, changed = await store.catalog.add_articles([first, fixed, art("b", "Other.")])
    assert counts == IngestCounts(new=2, duplicate=1)
    assert [a.text for a in changed] == ["Fighting continued, 3 dead.", "Other."]
    stored = await store.catalog.get_article("a")
    assert stored is not None and stored.text == "Fighting continued, 3 dead."
    # Text and hash agree: the corrected record is a duplicate of itself, the old one a change.
    assert (await store.catalog.add_articles([fixed]))[0] == IngestCounts(duplicate=1)
    assert (await store.catalog.add_articles([first]))[0] == IngestCounts(updated=1)


@pytest.mark.reliability
async def test_bad_records_are_cleaned_or_rejected_alone(
    store: Store, caplog: pytest.LogCaptureFixture
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
        counts, changed = await store.catalog.add_articles(batch)
    assert counts == IngestCounts(new=5, rejected=2)
    assert {a.id for a in changed} == {"good", "dated", "junk-date", "nul", "surrogate"}
    rejections = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejections) == 2
    assert any("id: 201 characters" in m for m in rejections)
    assert any("lang:" in m for m in rejections)
    dated = await store.catalog.get_article("dated")
    assert dated is not None and dated.published == "2022-01-12T08:00:00+00:00"
    undated = await store.catalog.get_article("junk-date")
    assert undated is not None and undated.published is None
    nul = await store.catalog.get_article("nul")
    assert nul is not None and nul.text == "Rockets hit the port." and nul.title == "Port attack"
    surrogate = await store.catalog.get_article("surrogate")
    assert surrogate is not None and surrogate.text == "Drone ? strike."


async def test_verdicts_and_flagged(store: Store) -> None:
    await store.catalog.add_articles([art("a"), art("b", "x"), art("c", "y")])
    await store.catalog.save_verdicts(
        [
            Verdict("a", True, 0.9, ("troops",), Level.ALERT, ("Ukraine",)),
            Verdict("b", False, 0.1, (), Level.IGNORE, ()),
            Verdict("c", True, 0.6, ("Krieg",), Level.DIGEST, ()),
        ]
    )
    flagged = await store.catalog.flagged(0.5)
    assert [(a.id, v.level) for a, v, _ in flagged] == [("a", Level.ALERT), ("c", Level.DIGEST)]
    assert flagged[0][1].reasons == ("troops",) and flagged[0][1].topics == ("Ukraine",)
    assert await store.catalog.flagged(0.5, since=datetime.now(UTC) + timedelta(seconds=1)) == []
    assert (await store.catalog.scores())["b"] == pytest.approx(0.1)


async def test_feedback_majority(store: Store) -> None:
    await store.catalog.add_articles([art("a"), art("b", "x")])
    chat = ChatRef("slack", "C1")
    await store.catalog.add_feedback("a", chat, "u1", True)
    await store.catalog.add_feedback("a", chat, "u1", False)  # changed their mind
    await store.catalog.add_feedback("a", chat, "u2", False)
    await store.catalog.add_feedback("b", chat, "u1", True)
    examples = {a.id: relevant for a, relevant in await store.catalog.feedback_examples()}
    assert examples == {"a": False, "b": True}


async def test_forget_source_deletes_a_files_articles_without_a_tombstone(store: Store) -> None:
    catalog = store.catalog
    a = dataclasses.replace(art("f1", "Shelling in the east."), source="articles/a.jsonl")
    b = dataclasses.replace(art("f2", "Talks in Geneva."), source="articles/a.jsonl")
    c = dataclasses.replace(art("f3", "Troops at the border."), source="articles/c.txt")
    feed = dataclasses.replace(art("f4", "Strikes on the port."), source="https://x.example/rss")
    await catalog.add_articles([a, b, c, feed])
    await catalog.save_verdicts([Verdict("f1", True, 0.9, (), Level.ALERT)])
    assert sorted(await catalog.file_sources("articles/")) == ["articles/a.jsonl", "articles/c.txt"]
    assert await catalog.forget_source("articles/a.jsonl") == 2
    assert await catalog.get_article("f1") is None and await catalog.get_article("f3") is not None
    assert "f1" not in await catalog.scores()
    # The file may come back: the same text is a new article again, not a pruned one.
    counts, _ = await catalog.add_articles([a])
    assert counts.new == 1


async def _store_many(store: Store, count: int) -> None:
    """`count` bare articles a0, a1 … written straight into the table (fast, no verdicts)."""
    from bot.schema import articles

    now = datetime.now(UTC)
    rows = [
        {"id": f"a{n}", "content_hash": f"h{n}", "title": "T", "text": "x", "lang": "en"}
        for n in range(count)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(articles.insert(), [dict(r, seen_at=now) for r in rows])


async def test_verdicts_of_a_huge_batch_are_stored(store: Store) -> None:
    # More than PostgreSQL's 32,767 parameters of one statement.
    count = 33_000
    await _store_many(store, count)
    batch = [Verdict(f"a{n}", True, 0.9, ("r",), Level.ALERT, ()) for n in range(count)]
    await store.catalog.save_verdicts(batch)
    await store.catalog.save_verdicts(batch[:10])  # replaced, not added
    assert len(await store.catalog.scores()) == count


async def test_story_ids_of_a_huge_batch_are_read(store: Store) -> None:
    # Routing a feed document of 100,000 entries asked for all their stories in one statement,
    # which PostgreSQL refuses past 32,767 parameters.
    count = 33_000
    await _store_many(store, count)
    await store.catalog.set_stories({"a1": "a0", "a32999": "a0"})
    found = await store.catalog.story_ids([f"a{n}" for n in range(count)] + ["a1", "gone"])
    assert len(found) == count and "gone" not in found
    assert found["a1"] == found["a32999"] == "a0" and found["a5"] == "a5"
