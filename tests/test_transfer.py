import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import transfer
from bot.config import Settings
from bot.ledger import AlertOwed
from bot.models import Article, ChatRef, Level, Preferences, Verdict
from bot.store import Store

from .conftest import NO_POSTGRES, OtherStore, postgres_available, postgres_schema

CHAT = ChatRef("telegram", "-1001", "7")


async def fill(store: Store) -> None:
    first = Article("a1", "Truppen an der Grenze", "Russland zieht Truppen zusammen.", "de")
    second = Article("a2", "Troops at the border", "Russia masses troops.", "en", url="https://x/2")
    await store.catalog.add_articles(
        [first, second], seen_at=datetime(2026, 1, 2, 8, 0, 1, 250, UTC)
    )
    await store.catalog.save_verdicts(
        [
            Verdict("a1", True, 0.93, ("Truppen",), Level.ALERT, ("Russland",)),
            Verdict("a2", True, 0.91, ("troops",), Level.ALERT, ("Russia",)),
        ]
    )
    await store.catalog.set_stories({"a2": "a1"})
    await store.subscriptions.subscribe(
        CHAT, "de", Preferences(timezone="Europe/Berlin", countries=("Ukraine",))
    )
    await store.sources.add("https://feeds.example.org/w.xml", name="W", added_by="telegram:-1001")
    await store.ledger.enqueue(CHAT, "a1", AlertOwed("a1", "de"))
    await store.catalog.add_feedback("a1", CHAT, "u1", True)


async def dump(store: Store) -> list[dict[str, object]]:
    out = io.StringIO()
    await transfer.export(store.engine, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
async def empty_postgres() -> AsyncIterator[Store]:
    if not postgres_available():
        pytest.skip(NO_POSTGRES)
    with postgres_schema() as url:
        async with Store.open(url) as pg:
            yield pg


# The test moves a deployment between the two backends itself: its `store` is the SQLite one.
@pytest.mark.postgres
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_sqlite_to_postgres_and_back_loses_nothing(
    store: Store, empty_postgres: Store, tmp_path: Path
) -> None:
    await fill(store)
    original = await dump(store)
    tables = {record["table"] for record in original if "table" in record}
    assert {"articles", "verdicts", "subscriptions", "sources", "deliveries", "feedback"} <= tables
    lines = [json.dumps(record) for record in original]
    counts = await transfer.import_rows(
        empty_postgres.engine, transfer.read_records(lines, "export.jsonl")
    )
    assert counts["articles"] == 2 and counts["deliveries"] == 1
    assert await dump(empty_postgres) == original
    # The moved deployment works on: new rows get fresh ids after the imported ones.
    assert await empty_postgres.ledger.enqueue(CHAT, "a9", AlertOwed("a2"))
    ids = [row["id"] for row in await empty_postgres.ledger.deliveries()]
    assert len(set(ids)) == 2
    back = await dump(empty_postgres)
    async with Store.open(f"sqlite+aiosqlite:///{tmp_path / 'again.sqlite3'}") as again:
        await transfer.import_rows(
            again.engine, transfer.read_records([json.dumps(r) for r in back], "back.jsonl")
        )
        assert await dump(again) == back
        entries = await again.catalog.entries(["a1"])
        assert entries[0][1].topics == ("Russland",)
        subscription = await again.subscriptions.subscription(CHAT)
        assert subscription is not None and subscription.prefs.countries == ("Ukraine",)


async def test_import_refuses_a_database_with_data(store: Store) -> None:
    await fill(store)
    lines = [json.dumps(record) for record in await dump(store)]
    with pytest.raises(transfer.TransferError, match="not empty"):
        await transfer.import_rows(store.engine, transfer.read_records(lines, "x.jsonl"))
    assert await store.catalog.count_articles() == 2


def test_bad_files_are_named_with_their_line() -> None:
    header = json.dumps({"format": "newsbot-export", "version": 1, "schema": 1})
    with pytest.raises(transfer.TransferError, match=r"x.jsonl:2: not JSON"):
        list(transfer.read_records([header, "{broken"], "x.jsonl"))
    with pytest.raises(transfer.TransferError, match=r"x.jsonl:1: not a newsbot export"):
        list(transfer.read_records(['{"table": "articles", "row": {}}'], "x.jsonl"))
    with pytest.raises(transfer.TransferError, match="unknown table 'users'"):
        list(transfer.read_records([header, '{"table": "users", "row": {}}'], "x.jsonl"))
    newer = json.dumps({"format": "newsbot-export", "version": 1, "schema": 999})
    with pytest.raises(transfer.TransferError, match="newer newsbot"):
        list(transfer.read_records([newer], "x.jsonl"))


async def test_a_database_from_a_newer_newsbot_refuses_to_open(
    settings: Settings, other_store: OtherStore
) -> None:
    from bot.db import SchemaTooNew
    from bot.schema import MIGRATIONS, schema_version

    url = settings.storage.url()
    async with Store.open(url) as opened, opened.engine.begin() as conn:
        await conn.execute(
            schema_version.insert().values(
                version=len(MIGRATIONS) + 1, applied_at=datetime.now(UTC)
            )
        )
    with pytest.raises(SchemaTooNew, match="newer than this newsbot"):
        async with Store.open(url):
            pass
    async with other_store() as fine:
        assert await fine.migrate() == len(MIGRATIONS)


async def test_a_truncated_export_is_refused_and_nothing_is_imported(
    store: Store, other_store: OtherStore
) -> None:
    """Review: `head -n 1000 export.jsonl` imported 999 articles and said nothing."""
    await fill(store)
    lines = [json.dumps(record) for record in await dump(store)]
    async with other_store() as new:
        for cut in (lines[:-1], lines[:3]):
            with pytest.raises(transfer.TransferError, match="truncated"):
                await transfer.import_rows(new.engine, transfer.read_records(cut, "x.jsonl"))
            assert await new.catalog.count_articles() == 0  # one transaction: all or nothing
        damaged = [*lines[:2], *lines[3:]]  # a row missing in the middle
        with pytest.raises(transfer.TransferError, match="do not match"):
            await transfer.import_rows(new.engine, transfer.read_records(damaged, "x.jsonl"))
        assert await new.catalog.count_articles() == 0
        await transfer.import_rows(new.engine, transfer.read_records(lines, "x.jsonl"))
        assert await new.catalog.count_articles() == 2


async def test_an_export_from_before_feed_owners_gets_its_owners(
    store: Store, other_store: OtherStore
) -> None:
    await fill(store)
    await store.sources.add("HTTP://Wire.Example/rss?")  # the config's
    records = await dump(store)
    # As schema 5 wrote it: no source_owners rows, the row counts to match, URLs as typed.
    old = [r for r in records if r.get("table") != "source_owners"]
    old[0]["schema"] = 5
    end = old[-1]["rows"]
    assert isinstance(end, dict) and end.pop("source_owners")
    for record in old:
        if record.get("table") == "sources" and "wire" in str(record["row"]):
            record["row"]["url"] = "HTTP://Wire.Example/rss?"  # type: ignore[index]
    lines = [json.dumps(record) for record in old]
    async with other_store() as fresh:
        await transfer.import_rows(fresh.engine, transfer.read_records(lines, "old.jsonl"))
        feeds = {feed.url: feed.owners for feed in await fresh.sources.active()}
    assert feeds == {
        "https://feeds.example.org/w.xml": frozenset({"telegram:-1001"}),
        "http://wire.example/rss": frozenset({"config"}),
    }


async def test_the_routed_mark_of_verdicts_moves_along(store: Store, tmp_path: Path) -> None:
    """Issue 1 of the review: an article stored but not yet routed is routed after the move;
    an export from before the mark (schema 7) counts its verdicts as routed."""
    await fill(store)
    # a1 was routed (its alert is owed); a2 was stored when the process was killed.
    await store.ledger.enqueue_many([], routed=["a1"])
    records = await dump(store)
    rows: list[Any] = [r["row"] for r in records if r.get("table") == "verdicts"]
    marks = {row["article_id"]: row["routed"] for row in rows}
    assert marks == {"a1": True, "a2": False}
    since = datetime(2026, 1, 1, tzinfo=UTC)
    async with Store.open(f"sqlite:///{tmp_path / 'moved.sqlite3'}") as moved:
        lines = [json.dumps(record) for record in records]
        await transfer.import_rows(moved.engine, transfer.read_records(lines, "export.jsonl"))
        assert [a.id for a, _ in await moved.catalog.unrouted(since)] == ["a2"]
    for record in records:
        if record.get("table") == "verdicts":
            row = record["row"]
            assert isinstance(row, dict)
            del row["routed"]
    records[0]["schema"] = 7
    async with Store.open(f"sqlite:///{tmp_path / 'old.sqlite3'}") as old:
        lines = [json.dumps(record) for record in records]
        await transfer.import_rows(old.engine, transfer.read_records(lines, "old.jsonl"))
        assert await old.catalog.unrouted(since) == []


async def test_an_export_from_before_article_sources_links_each_article_to_its_own(
    store: Store, tmp_path: Path
) -> None:
    await fill(store)
    records = [r for r in await dump(store) if r.get("table") != "article_sources"]
    records[0]["schema"] = 8
    end = records[-1]["rows"]
    assert isinstance(end, dict) and end.pop("article_sources") == 2
    async with Store.open(f"sqlite:///{tmp_path / 'old.sqlite3'}") as old:
        lines = [json.dumps(record) for record in records]
        await transfer.import_rows(old.engine, transfer.read_records(lines, "old.jsonl"))
        assert await old.catalog.sources_of(["a1", "a2"]) == {"a1": {""}, "a2": {""}}
