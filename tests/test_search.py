"""Retrieval: the in-memory index and the database full-text index (SQLite FTS5, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bot import qa
from bot.models import Article
from bot.search import StoreIndex
from bot.store import Store

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
        await store.prune(datetime.now(UTC) - timedelta(days=30))
        assert await asyncio.to_thread(len, index) == 2
        assert await asyncio.to_thread(index.get, "s-en-2") is None
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT count(*) FROM search_docs"))).scalar()
        assert rows == 2
    finally:
        await asyncio.to_thread(index.close)
