import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import jobs
from bot.feeds import FetchLimits
from bot.models import Article, ChatRef, Level, Preferences, Thresholds, Verdict
from bot.store import Store

from .conftest import SEED

NOW = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
CHAT = ChatRef("telegram", "1")
RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
<item><guid>g1</guid><title>Rebels shell the city of Aleppo</title>
<description>Heavy fighting and air strikes killed 20 civilians in Aleppo, Syria.</description>
<link>https://news.example/1</link></item></channel></rss>"""


def verdict(article_id: str, score: float = 0.95, topics: tuple[str, ...] = ("Syria",)) -> Verdict:
    return Verdict(article_id, True, score, ("fighting",), Level.ALERT, topics)


async def test_ingest_reports_counts_and_rejections(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    report = await jobs.ingest([SEED, tmp_path], store, thresholds=Thresholds())
    assert report.counts.new == 1 and len(report.rejected) == 1
    assert report.changed[0][1].conflict is True
    again = await jobs.ingest([SEED], store, thresholds=Thresholds())
    assert again.counts.duplicate == 1 and again.changed == []


async def test_route_alerts_each_story_once_per_chat(store: Store) -> None:
    await store.subscribe(CHAT, "en")
    a = Article("a", "Rebels shell Aleppo as fighting rages", "Fighting in Aleppo killed 20.", "en")
    b = Article(
        "b",
        "Rebels shell Aleppo as fighting rages on",
        "Fighting in Aleppo killed 20 people.",
        "en",
    )
    await store.add_articles([a, b])
    owed = await jobs.route(
        [(a, verdict("a")), (b, verdict("b"))], store, None, alert_threshold=0.8, now=NOW
    )
    assert owed == 1
    assert await store.story_ids(["a", "b"]) == {"a": "a", "b": "a"}
    # Re-ingest from another source later: still no second alert.
    assert await jobs.route([(b, verdict("b"))], store, None, alert_threshold=0.8, now=NOW) == 0


async def test_route_respects_threshold_filters_and_quiet_hours(store: Store) -> None:
    quiet = Preferences(quiet_start="22:00", quiet_end="07:00", timezone="Europe/Berlin")
    await store.subscribe(CHAT, "en", dataclasses.replace(quiet, alert_threshold=0.9))
    picky = ChatRef("telegram", "2")
    await store.subscribe(picky, "en", Preferences(countries=("Ukraine",)))
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo.", "en")
    await store.add_articles([article])
    night = datetime(2026, 1, 10, 23, 30, tzinfo=UTC)
    await jobs.route([(article, verdict("a", 0.85))], store, None, alert_threshold=0.8, now=night)
    assert await store.deliveries() == []  # below chat 1's threshold, wrong country for chat 2
    await jobs.route([(article, verdict("a", 0.95))], store, None, alert_threshold=0.8, now=night)
    [row] = await store.deliveries()
    assert row["chat_id"] == "1"
    held = row["next_attempt_at"].replace(tzinfo=UTC)
    assert held == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


@pytest.mark.reliability
async def test_digest_is_owed_once_per_slot_even_after_downtime(store: Store) -> None:
    prefs = Preferences(digest_at="07:00", timezone="Europe/Berlin")
    await store.subscribe(CHAT, "en", prefs)
    [sub] = await store.subscriptions()
    async with store.engine.begin() as conn:  # subscribed long ago
        from bot.store import subscriptions

        await conn.execute(subscriptions.update().values(created_at=NOW - timedelta(days=5)))
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo.", "en")
    await store.add_articles([article], seen_at=NOW - timedelta(hours=3))
    await store.save_verdicts([verdict("a")])
    kwargs: dict[str, Any] = {"digest_threshold": 0.5, "max_items": 20, "empty_message": False}
    # Down across two slots (28th and 29th, 07:00 Berlin): one catch-up for the latest slot.
    assert await jobs.digest_due(store, None, sub.id, now=NOW + timedelta(hours=1), **kwargs)
    assert not await jobs.digest_due(store, None, sub.id, now=NOW + timedelta(hours=2), **kwargs)
    rows = await store.deliveries()
    assert [(r["kind"], r["key"]) for r in rows] == [("digest", "2026-03-29T07:00:00+02:00")]
    # Too old to catch up: nothing.
    other = ChatRef("telegram", "2")
    await store.subscribe(other, "en", prefs)
    sub2 = await store.subscription(other)
    assert sub2 is not None
    late = NOW + timedelta(hours=10)
    assert not await jobs.digest_due(
        store, None, sub2.id, now=late, grace=timedelta(hours=6), **kwargs
    )


async def test_empty_digest_sends_nothing_unless_configured(store: Store) -> None:
    prefs = Preferences(digest_every_hours=1)
    await store.subscribe(CHAT, "de", prefs)
    [sub] = await store.subscriptions()
    now = sub.created_at + timedelta(hours=2)
    kwargs: dict[str, Any] = {"digest_threshold": 0.5, "max_items": 20}
    assert not await jobs.digest_due(store, None, sub.id, now=now, empty_message=False, **kwargs)
    later = now + timedelta(hours=1)
    assert await jobs.digest_due(store, None, sub.id, now=later, empty_message=True, **kwargs)
    [row] = await store.deliveries()
    assert row["kind"] == "notice" and "Keine neuen" in row["payload"]


async def test_poll_feed_stores_classifies_routes_and_honours_304(store: Store) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(
            200, content=RSS, headers={"ETag": '"v1"', "Content-Type": "application/rss+xml"}
        )

    await store.subscribe(CHAT, "en")
    await store.add_source("https://news.example/feed.xml", name="Wire")
    [source] = await store.sources()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        args: dict[str, Any] = {
            "limits": FetchLimits(),
            "allow_private": True,
            "thresholds": Thresholds(0.5, 0.3),
        }
        first = await jobs.poll_feed(client, store, source.id, now=NOW, **args)
        assert first.counts.new == 1 and first.changed[0][1].conflict
        later = NOW + timedelta(minutes=10)
        second = await jobs.poll_feed(client, store, source.id, now=later, **args)
        assert second.counts.new == 0
    assert requests[1].headers["if-none-match"] == '"v1"'
    [row] = await store.deliveries()
    assert row["kind"] == "alert"
    [state] = await store.sources()
    assert state.etag == '"v1"' and state.failures == 0


async def test_poll_feed_keeps_errors_as_data_and_backs_off(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    await store.add_source("https://down.example/feed.xml")
    [source] = await store.sources()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        args: dict[str, Any] = {
            "limits": FetchLimits(),
            "allow_private": True,
            "thresholds": Thresholds(),
        }
        await jobs.poll_feed(client, store, source.id, now=NOW, **args)
        [state] = await store.sources()
        assert state.failures == 1 and state.last_error and "503" in state.last_error
        assert state.next_attempt_at is not None and state.next_attempt_at > NOW
        # Polled again before the back-off ends: not fetched at all.
        await jobs.poll_feed(client, store, source.id, now=NOW + timedelta(seconds=1), **args)
        [state] = await store.sources()
        assert state.failures == 1


async def test_a_feed_host_that_never_answers_ends_at_the_deadline(store: Store) -> None:
    import asyncio
    import time

    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # accept the request, never answer
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await store.add_source(f"http://127.0.0.1:{port}/feed.xml")
    [source] = await store.sources()
    limits = FetchLimits(connect_timeout=0.5, read_timeout=5.0, total_timeout=0.5)
    try:
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            report = await jobs.poll_feed(
                client,
                store,
                source.id,
                limits=limits,
                allow_private=True,
                thresholds=Thresholds(),
                now=NOW,
            )
            assert time.perf_counter() - started < 3.0
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handler close its side of the connection
    assert report.counts.new == 0
    [state] = await store.sources()
    assert state.failures == 1 and state.last_error


async def test_teasers_are_replaced_by_the_linked_page_when_enabled(store: Store) -> None:
    body = " ".join(["Government forces shelled rebel positions near Aleppo on Monday."] * 12)
    page = f"<html><body><article><h1>Aleppo</h1><p>{body}</p></article></body></html>"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/1":
            return httpx.Response(200, content=page.encode(), headers={"Content-Type": "text/html"})
        return httpx.Response(200, content=RSS, headers={"Content-Type": "application/rss+xml"})

    await store.add_source("https://news.example/feed.xml")
    [source] = await store.sources()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await jobs.poll_feed(
            client,
            store,
            source.id,
            limits=FetchLimits(),
            allow_private=True,
            thresholds=Thresholds(),
            now=NOW,
            full_text=True,
        )
    [article] = await store.all_articles()
    assert "Government forces shelled rebel positions" in article.text


@pytest.mark.reliability
async def test_an_article_is_never_stored_without_its_verdict(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo killed 20 civilians.", "en")

    def crashed(*args: object) -> list[Verdict]:
        raise RuntimeError("classifier crashed")

    monkeypatch.setattr(jobs, "classify_all", crashed)
    with pytest.raises(RuntimeError):
        await jobs.store_and_classify([article], store, thresholds=Thresholds())
    monkeypatch.undo()
    # The failed ingest left nothing behind, so the next one stores and classifies it.
    counts, classified = await jobs.store_and_classify([article], store, thresholds=Thresholds())
    assert counts.new == 1 and [a.id for a, _ in classified] == ["a"]
    assert [a.id for a, _ in await store.entries(["a"])] == ["a"]
    assert await store.unclassified() == []


@pytest.mark.reliability
async def test_articles_without_a_verdict_are_classified_and_routed_by_the_sweep(
    store: Store,
) -> None:
    await store.subscribe(CHAT, "en")
    # As an older version (or a crash between its two commits) left them.
    article = Article("a", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en")
    await store.add_articles([article])
    assert [a.id for a in await store.unclassified()] == ["a"]
    done = await jobs.classify_unclassified(store, None, thresholds=Thresholds(0.5, 0.3), now=NOW)
    assert done == 1 and await store.unclassified() == []
    [(_, stored)] = await store.entries(["a"])
    assert stored.conflict
    [row] = await store.deliveries()
    assert row["kind"] == "alert" and row["chat_id"] == CHAT.chat_id


@pytest.mark.reliability
async def test_a_pruned_story_still_listed_by_its_feed_is_not_alerted_again(
    store: Store,
) -> None:
    await store.subscribe(CHAT, "en")
    article = Article("g1", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en")
    thresholds = Thresholds(0.5, 0.3)

    async def poll(now: datetime) -> int:
        _, changed = await jobs.store_and_classify(
            [article], store, thresholds=thresholds, seen_at=now
        )
        return await jobs.route(changed, store, None, alert_threshold=0.5, now=now)

    # The ledger stamps rows with the real time, so this story happens now.
    start = datetime.now(UTC)
    assert await poll(start) == 1
    await store.mark_sent((await store.deliveries())[0]["id"], start, ["1"], 0)
    later = start + timedelta(days=31)
    await jobs.prune(store, retention=timedelta(days=30), now=later)
    assert await store.count_articles() == 0 and await store.deliveries() == []
    # The feed still lists the entry a month later: it is not news, and nobody is alerted.
    assert await poll(later) == 0
    assert await store.deliveries() == []
    # A corrected version of it is news again.
    article = dataclasses.replace(article, text="Heavy fighting in Aleppo killed 25.")
    assert await poll(later) == 1
