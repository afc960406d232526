"""Retrieval: the in-memory index and the database full-text index (SQLite FTS5, PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot import qa
from bot.models import Article
from bot.search import StoreIndex, sqlite_file
from bot.store import Store

from .conftest import only

TALKS = Article(
    id="s-de-1",
    title="Gespräche in Genf",
    text="Für Deutschland nimmt Staatssekretär Andreas Michaelis an den Gesprächen in Genf teil.",
    lang="de",
)
STORM = Article(
    id="s-en-1",
    title="Storm hits Portmoor",
    text="A storm killed three people in Portmoor on Tuesday. Roads were closed.",
    lang="en",
)
MARKET = Article(
    id="s-en-2",
    title="Acme shares rise",
    text="Shares of Acme rose 4 percent on Wednesday after strong quarterly results.",
    lang="en",
)


async def test_store_index_is_written_with_the_article_and_pruned(store: Store) -> None:
    url = store.engine.url
    old = datetime.now(UTC) - timedelta(days=40)
    await store.catalog.add_articles([MARKET], seen_at=old)
    await store.catalog.add_articles([TALKS, STORM])
    index = await asyncio.to_thread(StoreIndex, url)
    try:
        assert await asyncio.to_thread(len, index) == 3
        hits = await asyncio.to_thread(index.search, "storm Portmoor", 2)
        assert hits[0][0].id == "s-en-1" and hits[0][0].text == STORM.text
        # A cross-lingual question over the store: the German article answers.
        got = await asyncio.to_thread(qa.answer, "Who attends from Germany?", index)
        assert got.text is not None and "Michaelis" in got.text
        assert got.sources[0].id == "s-de-1"
        got = await asyncio.to_thread(
            qa.answer, "When did Acme shares rise?", index, article_id="s-en-2"
        )
        assert got.text is not None and "Wednesday" in got.text
        # Replacing an article replaces its row; pruning removes the old one's.
        await store.catalog.add_articles(
            [Article(id="s-en-1", title="Calm", text="Quiet.", lang="en")]
        )
        assert await asyncio.to_thread(index.search, "storm Portmoor", 2) == []
        await store.catalog.prune(datetime.now(UTC) - timedelta(days=30))
        assert await asyncio.to_thread(len, index) == 2
        assert await asyncio.to_thread(index.get, "s-en-2") is None
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT count(*) FROM search_docs"))).scalar()
        assert rows == 2
    finally:
        await asyncio.to_thread(index.close)


def test_sqlite_file_of_plain_sqlite_urls_only() -> None:
    assert sqlite_file("sqlite:///data/newsbot.sqlite3") == "data/newsbot.sqlite3"
    assert sqlite_file("sqlite+aiosqlite:////tmp/x.sqlite3") == "/tmp/x.sqlite3"
    assert sqlite_file(sa.make_url("sqlite+aiosqlite:////tmp/x.sqlite3")) == "/tmp/x.sqlite3"
    # Everything else keeps SQLAlchemy's engine: memory, options, other databases.
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("sqlite:///x.sqlite3?mode=ro") is None
    assert sqlite_file("postgresql+asyncpg://u@h/db") is None


@only("sqlite", "the standard library's sqlite3 reader serves plain SQLite files alone")
async def test_store_index_reads_a_sqlite_file_from_several_threads(store: Store) -> None:
    await store.catalog.add_articles([TALKS, STORM, MARKET])
    index = await asyncio.to_thread(StoreIndex, store.engine.url)
    assert index._sqlite is not None  # the standard library's driver, no engine
    try:
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(lambda _: index.search("storm Portmoor", 1), range(8)))
        assert {hits[0][0].id for hits in found} == {"s-en-1"}
        assert [a.id for a in index._articles(["s-en-2", "nope", "s-de-1"])] == ["s-en-2", "s-de-1"]
        opened = list(index._sqlite._opened)
        assert len(opened) >= 2
    finally:
        index.close()
    for conn in opened:  # every thread's connection is closed with the index
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
