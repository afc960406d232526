from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot import db
from bot.config import Settings
from bot.db import create_engine
from bot.models import ChatRef
from bot.schema import MIGRATIONS, articles, metadata, schema_version, sources
from bot.store import Store


def _layout(conn: Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    return {
        name: {c["name"] for c in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }


async def test_every_step_is_idempotent_and_builds_the_declared_tables(
    settings: Settings,
) -> None:
    engine = create_engine(settings.storage.url())
    try:
        async with engine.begin() as conn:
            for step in MIGRATIONS:
                await conn.run_sync(step)
            first = await conn.run_sync(_layout)
            # Migration 1 builds from the live metadata: later steps must find nothing to do.
            for step in MIGRATIONS:
                await conn.run_sync(step)
            assert await conn.run_sync(_layout) == first
    finally:
        await engine.dispose()
    for table in metadata.sorted_tables:
        if table.name != "schema_version":
            assert first[table.name] == {c.name for c in table.columns}, table.name


async def test_step_7_keeps_who_added_each_feed_and_makes_old_urls_canonical(
    settings: Settings,
) -> None:
    url = settings.storage.url()
    engine = create_engine(url)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        # A database before feed owners: schema version 5, owners in `added_by`.
        assert await db.migrate(engine, MIGRATIONS[:5], schema_version) == 5
        async with engine.begin() as conn:
            for url_, added_by, active in (
                ("https://wire.example/rss", "config", True),
                ("HTTP://Chat.Example:80/feed?", "telegram:111", True),
                ("https://gone.example/rss", "telegram:222", False),
            ):
                await conn.execute(
                    sources.insert().values(
                        url=url_, added_by=added_by, active=active, created_at=when
                    )
                )
            await conn.execute(
                articles.insert().values(
                    id="a1",
                    content_hash="h1",
                    title="Shelling near the border",
                    text="Shelling near the border.",
                    lang="en",
                    source="HTTP://Chat.Example:80/feed?",
                    seen_at=when,
                )
            )
    finally:
        await engine.dispose()
    async with Store.open(url) as store:
        assert await store.migrate() == len(MIGRATIONS)
        by_url = {feed.url: feed for feed in await store.sources.active()}
        assert set(by_url) == {"https://wire.example/rss", "http://chat.example/feed"}
        wire, chat = by_url["https://wire.example/rss"], by_url["http://chat.example/feed"]
        assert (wire.owners, wire.public) == (frozenset({"config"}), True)
        assert (chat.owners, chat.public) == (frozenset({"telegram:111"}), False)
        assert chat.audience() == frozenset({ChatRef("telegram", "111")})
        gone = await store.sources.find("https://gone.example/rss")
        assert gone is not None and gone.owners == frozenset()
        # The article moved with its feed's URL: still that chat's own.
        async with store.engine.connect() as conn:
            source = (await conn.execute(sa.select(articles.c.source))).scalar_one()
        assert source == "http://chat.example/feed"
        # The same feed written the old way is the one row; the second chat becomes an owner.
        assert await store.sources.add("http://chat.example/feed#x", added_by="slack:C2")
        [shared] = [f for f in await store.sources.active() if f.id == chat.id]
        assert shared.owners == frozenset({"telegram:111", "slack:C2"})


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_step_8_counts_the_verdicts_of_an_older_database_as_routed(
    settings: Settings,
) -> None:
    url = settings.storage.url()
    engine = create_engine(url)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        assert await db.migrate(engine, MIGRATIONS[:7], schema_version) == 7
        async with engine.begin() as conn:
            # As schema 7 left verdicts: without the mark (step 1 builds from today's tables).
            await conn.execute(sa.text("DROP INDEX ix_verdicts_routed"))
            await conn.execute(sa.text("ALTER TABLE verdicts DROP COLUMN routed"))
            await conn.execute(
                articles.insert().values(
                    id="a1", content_hash="h1", title="t", text="x", lang="en", seen_at=when
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO verdicts (article_id, conflict, score, level, reasons, topics,"
                    " classified_at) VALUES ('a1', true, 0.9, 'alert', '[]', '[]', :when)"
                ),
                {"when": when},
            )
    finally:
        await engine.dispose()
    async with Store.open(url) as store:
        assert await store.migrate() == len(MIGRATIONS)
        # Routed then, or lost for good: either way not news now, so never swept.
        assert await store.catalog.unrouted(datetime(2026, 1, 1, tzinfo=UTC)) == []
        await store.catalog.save_verdicts([*(v for _, v in await store.catalog.entries(["a1"]))])
        assert [
            a.id for a, _ in await store.catalog.unrouted(datetime(2026, 1, 1, tzinfo=UTC))
        ] == ["a1"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_step_9_links_each_stored_article_to_its_own_source(settings: Settings) -> None:
    url = settings.storage.url()
    engine = create_engine(url)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        assert await db.migrate(engine, MIGRATIONS[:8], schema_version) == 8
        async with engine.begin() as conn:
            for article_id, source in (("a1", "https://own.example/rss"), ("a2", None)):
                await conn.execute(
                    articles.insert().values(
                        id=article_id,
                        content_hash=f"h-{article_id}",
                        title="t",
                        text=article_id,
                        lang="en",
                        source=source,
                        seen_at=when,
                    )
                )
    finally:
        await engine.dispose()
    async with Store.open(url) as store:
        assert await store.migrate() == len(MIGRATIONS)
        assert await store.catalog.sources_of(["a1", "a2"]) == {
            "a1": {"https://own.example/rss"},
            "a2": {""},
        }


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_step_11_keys_folder_files_by_host_and_resolved_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folder files were stored by their configured path (`articles/a.txt`): any other folder
    of that spelling swept them as its own (review defect 1). Feeds and agencies stay."""
    import socket

    from bot import articles as article_files
    from bot.schema import article_sources

    work = tmp_path / "work"
    (work / "real").mkdir(parents=True)
    (work / "articles").symlink_to(work / "real")  # the folder is resolved, as it is read
    monkeypatch.chdir(work)
    url = settings.storage.url()
    engine = create_engine(url)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    legacy = {
        "a1": "articles/a1.txt",
        "a2": "/srv/articles/a2.txt",
        "a3": "https://feed.example/rss?path=/x",
        "a4": "Reuters",
        "a5": None,
    }
    try:
        assert await db.migrate(engine, MIGRATIONS[:9], schema_version) == 9
        async with engine.begin() as conn:
            for article_id, source in legacy.items():
                await conn.execute(
                    articles.insert().values(
                        id=article_id,
                        content_hash=f"h-{article_id}",
                        title="t",
                        text=article_id,
                        lang="en",
                        source=source,
                        seen_at=when,
                    )
                )
            # The feed's text was also in a folder file: the link moves too.
            await conn.execute(
                article_sources.insert().values(
                    article_id="a3", source="articles/copy.txt", seen_at=when
                )
            )
    finally:
        await engine.dispose()
    async with Store.open(url) as store:
        assert await store.migrate() == len(MIGRATIONS)
        found = await store.catalog.sources_of(list(legacy))
        host, here = socket.gethostname(), work.resolve()
        assert found == {
            "a1": {f"{host}:{here}/real/a1.txt"},
            "a2": {f"{host}:/srv/articles/a2.txt"},
            "a3": {"https://feed.example/rss?path=/x", f"{host}:{here}/real/copy.txt"},
            "a4": {"Reuters"},
            "a5": {""},
        }
        # Exactly what this directory's folder now finds as its own files, and sweeps.
        key = article_files.folder_key(Path("articles"))
        assert await store.catalog.file_sources(key + "/") == [
            f"{host}:{here}/real/a1.txt",
            f"{host}:{here}/real/copy.txt",
        ]
