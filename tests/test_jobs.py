import asyncio
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from apscheduler.events import (
    EVENT_ALL,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import app, config, jobs, qa
from bot.catalog import Catalog
from bot.conversation import Conversation
from bot.feeds import FetchLimits
from bot.models import (
    Article,
    ChatRef,
    Digest,
    Inbound,
    Level,
    Preferences,
    Thresholds,
    Verdict,
)
from bot.store import Store

from .conftest import SEED
from .feedfakes import BADINPUT
from .feedserver import FeedServer
from .repos import digesting, repositories, routing

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
    report = await jobs.ingest([SEED, tmp_path], store.catalog, thresholds=Thresholds())
    assert report.counts.new == 1 and len(report.rejected) == 1
    assert report.changed[0][1].conflict is True
    again = await jobs.ingest([SEED], store.catalog, thresholds=Thresholds())
    assert again.counts.duplicate == 1 and again.changed == []


async def test_route_alerts_each_story_once_per_chat(store: Store) -> None:
    await store.subscriptions.subscribe(CHAT, "en")
    a = Article("a", "Rebels shell Aleppo as fighting rages", "Fighting in Aleppo killed 20.", "en")
    b = Article(
        "b",
        "Rebels shell Aleppo as fighting rages on",
        "Fighting in Aleppo killed 20 people.",
        "en",
    )
    await store.catalog.add_articles([a, b])
    owed = await jobs.route(
        [(a, verdict("a")), (b, verdict("b"))], *routing(store), None, alert_threshold=0.8, now=NOW
    )
    assert owed == 1
    assert await store.catalog.story_ids(["a", "b"]) == {"a": "a", "b": "a"}
    # Re-ingest from another source later: still no second alert.
    assert (
        await jobs.route([(b, verdict("b"))], *routing(store), None, alert_threshold=0.8, now=NOW)
        == 0
    )


async def test_route_respects_threshold_filters_and_quiet_hours(store: Store) -> None:
    quiet = Preferences(quiet_start="22:00", quiet_end="07:00", timezone="Europe/Berlin")
    await store.subscriptions.subscribe(CHAT, "en", dataclasses.replace(quiet, alert_threshold=0.9))
    picky = ChatRef("telegram", "2")
    await store.subscriptions.subscribe(picky, "en", Preferences(countries=("Ukraine",)))
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo.", "en")
    await store.catalog.add_articles([article])
    night = datetime(2026, 1, 10, 23, 30, tzinfo=UTC)
    await jobs.route(
        [(article, verdict("a", 0.85))], *routing(store), None, alert_threshold=0.8, now=night
    )
    assert (
        await store.ledger.deliveries() == []
    )  # below chat 1's threshold, wrong country for chat 2
    await jobs.route(
        [(article, verdict("a", 0.95))], *routing(store), None, alert_threshold=0.8, now=night
    )
    [row] = await store.ledger.deliveries()
    assert row["chat_id"] == "1"
    held = row["next_attempt_at"].replace(tzinfo=UTC)
    assert held == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


class CountingCatalog(Catalog):
    """A real catalog that records each load of recent articles."""

    loads: list[int]

    async def recent(
        self, since: datetime, limit: int | None = 5000, text_chars: int | None = None
    ) -> list[tuple[Article, str, datetime]]:
        rows = await super().recent(since, limit, text_chars)
        self.loads.append(len(rows))
        return rows


def report(article_id: str, when: str = "") -> Article:
    title = "Rebels shell Aleppo as heavy fighting rages in the north"
    return Article(article_id, title, f"Fighting in Aleppo killed 20 {when}.", "en")


async def test_the_story_index_is_loaded_once_and_kept_across_passes(store: Store) -> None:
    counting = store
    catalog = counting.catalog = CountingCatalog(store.engine)
    catalog.loads = []
    await counting.subscriptions.subscribe(CHAT, "en")
    earlier = report("old")
    await counting.catalog.add_articles([earlier], seen_at=NOW - timedelta(hours=1))
    await counting.catalog.set_stories({"old": "old"})
    index = jobs.StoryIndex()
    kwargs: dict[str, Any] = {"alert_threshold": 0.8, "stories": index}
    for n in range(3):
        article = report(f"r{n}", f"on day {n}")
        await counting.catalog.add_articles([article], seen_at=NOW + timedelta(minutes=n))
        now = NOW + timedelta(minutes=n)
        await jobs.route(
            [(article, verdict(article.id))], *routing(counting), None, now=now, **kwargs
        )
    # Loaded from the store once (the stored earlier report; the pass's own article left out),
    # then kept: every later report joins the earlier story without reading the store again.
    assert catalog.loads == [2]
    assert len(index) == 4
    ids = ["old", "r0", "r1", "r2"]
    assert await counting.catalog.story_ids(ids) == dict.fromkeys(ids, "old")
    # One alert for the story, whichever of its reports brought it.
    assert [row["key"] for row in await counting.ledger.deliveries()] == ["old"]


async def test_the_story_index_forgets_reports_older_than_the_window(store: Store) -> None:
    await store.subscriptions.subscribe(CHAT, "en")
    index = jobs.StoryIndex(timedelta(days=3), parts=12)
    first, again, later = report("a"), report("b", "again"), report("c", "a week on")
    for article, when in [(first, NOW), (again, NOW + timedelta(days=2)), (later, NOW)]:
        when = when if article is not later else NOW + timedelta(days=5, hours=7)
        await store.catalog.add_articles([article], seen_at=when)
        await jobs.route(
            [(article, verdict(article.id))],
            *routing(store),
            None,
            alert_threshold=0.8,
            now=when,
            stories=index,
        )
    # Two days on, the same event; five days after the last report it is a new story (whose
    # last report, three days and seven hours back, fell out of the three-day window).
    assert await store.catalog.story_ids(["a", "b", "c"]) == {"a": "a", "b": "a", "c": "c"}
    assert len(index) == 1
    assert sorted(row["key"] for row in await store.ledger.deliveries()) == ["a", "c"]


async def test_a_full_story_index_drops_its_oldest_slices(store: Store) -> None:
    index = jobs.StoryIndex(timedelta(days=3), parts=12, limit=2)  # six-hour slices
    first = report("a")
    others = [
        Article("q", "Earthquake shakes Lima overnight", "A strong quake hit Lima, Peru.", "en"),
        Article("f", "Floods cut off villages in Bavaria", "Rivers burst their banks.", "en"),
    ]
    again = report("b", "again")
    for hours, article in enumerate([first, *others, again]):
        when = NOW + timedelta(hours=6 * hours)
        await store.catalog.add_articles([article], seen_at=when)
        await jobs.route(
            [(article, verdict(article.id))],
            *routing(store),
            None,
            alert_threshold=0.8,
            now=when,
            stories=index,
        )
    # Eighteen hours on, well inside the window, but the index held two slices' worth: the
    # first report's slice went, and the same event starts a story of its own.
    assert await store.catalog.story_ids(["a", "b"]) == {"a": "a", "b": "b"}
    assert len(index) == 3


async def test_a_reset_index_rebuilds_what_another_instance_routed(store: Store) -> None:
    ours, theirs = jobs.StoryIndex(), jobs.StoryIndex()
    kwargs: dict[str, Any] = {"alert_threshold": 0.8}
    mine = report("mine", "at dawn")
    await store.catalog.add_articles([mine], seen_at=NOW)
    await jobs.route(
        [(mine, verdict("mine"))], *routing(store), None, now=NOW, stories=ours, **kwargs
    )
    # The other instance led meanwhile and routed the first report of another event.
    other = Article("x", "Earthquake shakes Lima overnight", "A strong quake hit Lima, Peru.", "en")
    await store.catalog.add_articles([other], seen_at=NOW + timedelta(minutes=1))
    await jobs.route(
        [(other, verdict("x"))], *routing(store), None, now=NOW, stories=theirs, **kwargs
    )
    ours.reset()  # this instance leads again
    again = dataclasses.replace(other, id="y", text="A strong quake hit Lima, Peru, at night.")
    await store.catalog.add_articles([again], seen_at=NOW + timedelta(minutes=2))
    later = NOW + timedelta(minutes=2)
    await jobs.route(
        [(again, verdict("y"))], *routing(store), None, now=later, stories=ours, **kwargs
    )
    assert await store.catalog.story_ids(["mine", "x", "y"]) == {"mine": "mine", "x": "x", "y": "x"}
    assert len(ours) == 3


async def test_an_index_not_kept_sees_what_another_instance_routed(store: Store) -> None:
    follower, leader = jobs.StoryIndex(), jobs.StoryIndex()
    follower.kept = False
    kwargs: dict[str, Any] = {"alert_threshold": 0.8, "now": NOW}
    mine = report("mine", "at dawn")
    await store.catalog.add_articles([mine], seen_at=NOW)
    await jobs.route([(mine, verdict("mine"))], *routing(store), None, stories=follower, **kwargs)
    assert len(follower) == 0  # nothing kept between passes
    other = Article("x", "Earthquake shakes Lima overnight", "A strong quake hit Lima, Peru.", "en")
    await store.catalog.add_articles([other], seen_at=NOW + timedelta(minutes=1))
    await jobs.route([(other, verdict("x"))], *routing(store), None, stories=leader, **kwargs)
    again = dataclasses.replace(other, id="y", text="A strong quake hit Lima, Peru, at night.")
    await store.catalog.add_articles([again], seen_at=NOW + timedelta(minutes=2))
    await jobs.route([(again, verdict("y"))], *routing(store), None, stories=follower, **kwargs)
    assert await store.catalog.story_ids(["x", "y"]) == {"x": "x", "y": "x"}


def test_the_index_loads_enough_text_for_the_event_signature() -> None:
    from bot import cluster

    words = " ".join(f"Word{n} in Aleppo killed {n}0" for n in range(400))
    article = Article("long", "Rebels shell Aleppo", words, "en")
    assert len(article.text) > 4 * jobs.SIGNATURE_CHARS
    cut = dataclasses.replace(article, text=article.text[: jobs.SIGNATURE_CHARS])
    assert cluster.signature(cut) == cluster.signature(article)


@pytest.mark.reliability
async def test_digest_is_owed_once_per_slot_even_after_downtime(store: Store) -> None:
    prefs = Preferences(digest_at="07:00", timezone="Europe/Berlin")
    await store.subscriptions.subscribe(CHAT, "en", prefs)
    [sub] = await store.subscriptions.active()
    async with store.engine.begin() as conn:  # subscribed long ago
        from bot.schema import subscriptions

        await conn.execute(subscriptions.update().values(created_at=NOW - timedelta(days=5)))
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo.", "en")
    await store.catalog.add_articles([article], seen_at=NOW - timedelta(hours=3))
    await store.catalog.save_verdicts([verdict("a")])
    kwargs: dict[str, Any] = {"digest_threshold": 0.5, "max_items": 20, "empty_message": False}
    # Down across two slots (28th and 29th, 07:00 Berlin): one catch-up for the latest slot.
    assert await jobs.digest_due(
        *digesting(store), None, sub.id, now=NOW + timedelta(hours=1), **kwargs
    )
    assert not await jobs.digest_due(
        *digesting(store), None, sub.id, now=NOW + timedelta(hours=2), **kwargs
    )
    rows = await store.ledger.deliveries()
    assert [(r["kind"], r["key"]) for r in rows] == [("digest", "2026-03-29T07:00:00+02:00")]
    # Too old to catch up: nothing.
    other = ChatRef("telegram", "2")
    await store.subscriptions.subscribe(other, "en", prefs)
    sub2 = await store.subscriptions.subscription(other)
    assert sub2 is not None
    late = NOW + timedelta(hours=10)
    assert not await jobs.digest_due(
        *digesting(store), None, sub2.id, now=late, grace=timedelta(hours=6), **kwargs
    )


async def test_empty_digest_sends_nothing_unless_configured(store: Store) -> None:
    prefs = Preferences(digest_every_hours=1)
    await store.subscriptions.subscribe(CHAT, "de", prefs)
    [sub] = await store.subscriptions.active()
    now = sub.created_at + timedelta(hours=2)
    kwargs: dict[str, Any] = {"digest_threshold": 0.5, "max_items": 20}
    assert not await jobs.digest_due(
        *digesting(store), None, sub.id, now=now, empty_message=False, **kwargs
    )
    later = now + timedelta(hours=1)
    assert await jobs.digest_due(
        *digesting(store), None, sub.id, now=later, empty_message=True, **kwargs
    )
    [row] = await store.ledger.deliveries()
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

    await store.subscriptions.subscribe(CHAT, "en")
    await store.sources.add("https://news.example/feed.xml", name="Wire")
    [source] = await store.sources.active()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        args: dict[str, Any] = {
            "limits": FetchLimits(),
            "allow_private": True,
            "thresholds": Thresholds(0.5, 0.3),
        }
        first = await jobs.poll_feed(client, *repositories(store), source.id, now=NOW, **args)
        assert first.counts.new == 1 and first.changed[0][1].conflict
        later = NOW + timedelta(minutes=10)
        second = await jobs.poll_feed(client, *repositories(store), source.id, now=later, **args)
        assert second.counts.new == 0
    assert requests[1].headers["if-none-match"] == '"v1"'
    [row] = await store.ledger.deliveries()
    assert row["kind"] == "alert"
    [feed] = await store.sources.active()
    assert feed.state.etag == '"v1"' and feed.state.failures == 0


async def test_poll_feed_keeps_errors_as_data_and_backs_off(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    await store.sources.add("https://down.example/feed.xml")
    [source] = await store.sources.active()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        args: dict[str, Any] = {
            "limits": FetchLimits(),
            "allow_private": True,
            "thresholds": Thresholds(),
        }
        await jobs.poll_feed(client, *repositories(store), source.id, now=NOW, **args)
        [feed] = await store.sources.active()
        assert feed.state.failures == 1 and feed.state.last_error and "503" in feed.state.last_error
        assert feed.state.next_attempt is not None and feed.state.next_attempt > NOW
        # Polled again before the back-off ends: not fetched at all.
        await jobs.poll_feed(
            client, *repositories(store), source.id, now=NOW + timedelta(seconds=1), **args
        )
        [feed] = await store.sources.active()
        assert feed.state.failures == 1


@pytest.mark.reliability
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
    await store.sources.add(f"http://127.0.0.1:{port}/feed.xml")
    [source] = await store.sources.active()
    limits = FetchLimits(connect_timeout=0.5, read_timeout=5.0, total_timeout=0.5)
    try:
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            report = await jobs.poll_feed(
                client,
                *repositories(store),
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
    [feed] = await store.sources.active()
    assert feed.state.failures == 1 and feed.state.last_error


async def test_teasers_are_replaced_by_the_linked_page_when_enabled(store: Store) -> None:
    body = " ".join(["Government forces shelled rebel positions near Aleppo on Monday."] * 12)
    page = f"<html><body><article><h1>Aleppo</h1><p>{body}</p></article></body></html>"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/1":
            return httpx.Response(200, content=page.encode(), headers={"Content-Type": "text/html"})
        return httpx.Response(200, content=RSS, headers={"Content-Type": "application/rss+xml"})

    await store.sources.add("https://news.example/feed.xml")
    [source] = await store.sources.active()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await jobs.poll_feed(
            client,
            *repositories(store),
            source.id,
            limits=FetchLimits(),
            allow_private=True,
            thresholds=Thresholds(),
            now=NOW,
            full_text=True,
        )
    [article] = await store.catalog.all_articles()
    assert "Government forces shelled rebel positions" in article.text


# --- feed polling under faults (issue 11 items 2; checklist 6, 14, 16, 20) -------------------


def _disk_full(store: Store) -> Callable[[], None]:
    """Make the real SQLite file refuse to grow (SQLITE_FULL) until the returned undo is called."""
    engine = store.engine.sync_engine

    def full(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        (pages,) = cursor.fetchone()
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    def undo(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA max_page_count = 1073741823")
        cursor.close()

    sa.event.listen(engine, "checkout", full)

    def restore() -> None:
        sa.event.remove(engine, "checkout", full)
        sa.event.listen(engine, "checkout", undo)

    return restore


@pytest.mark.reliability
# The fault is injected through SQLite's own locking (PRAGMA); PostgreSQL's half has no such hook.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_validators_are_saved_only_after_the_entries_are_committed(store: Store) -> None:
    # Issue 11 item 2: ETag saved first, store fails (disk full), next poll is a 304: all lost.
    body = " ".join(["Troops crossed the border overnight and shelled the town."] * 40)
    items = "".join(
        f"<item><guid>g{n}</guid><title>Shelling {n}</title><description>{body} {n}"
        "</description></item>"
        for n in range(40)
    )
    document = f'<rss version="2.0"><channel><title>W</title>{items}</channel></rss>'.encode()
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("if-none-match"))
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"'})
        return httpx.Response(200, content=document, headers={"ETag": '"v1"'})

    await store.sources.add("https://news.example/feed.xml")
    [source] = await store.sources.active()
    args: dict[str, Any] = {
        "limits": FetchLimits(),
        "allow_private": True,
        "thresholds": Thresholds(),
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        restore = _disk_full(store)
        with pytest.raises(sa.exc.OperationalError, match="full"):
            await jobs.poll_feed(client, *repositories(store), source.id, now=NOW, **args)
        restore()
        [feed] = await store.sources.active()
        assert feed.state.etag is None  # not moved on: the entries were never committed
        report = await jobs.poll_feed(client, *repositories(store), source.id, now=NOW, **args)
    assert sent == [None, None]  # the second poll asked for the whole feed again
    assert report.counts.new == 40
    assert len(await store.catalog.all_articles()) == 40
    [feed] = await store.sources.active()
    assert feed.state.etag == '"v1"'


@pytest.mark.reliability
# A timing test of the scheduler against a 1 s interval: the store's backend is not the subject.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_hanging_page_host_never_makes_the_scheduler_skip_a_run(
    settings: config.Settings,
) -> None:
    # Checklist 6, scheduler side: with sources.full_text on, teaser pages on a host that
    # accepts and never answers kept the job running past its interval, and APScheduler
    # skipped the next runs (max_instances=1).
    server = FeedServer(behaviours={f"/page{n}": "hang" for n in range(16)})
    async with server.serving(["127.0.0.1", "127.0.0.2"]) as ports:
        pages = f"http://127.0.0.2:{ports['127.0.0.2']}/page"
        teasers = "".join(
            f"<item><guid>t{n}</guid><title>Teaser {n}</title><description>Short.</description>"
            f"<link>{pages}{n}</link></item>"
            for n in range(16)
        )

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200, content=f'<rss version="2.0"><channel>{teasers}</channel></rss>'.encode()
            )

        settings = settings.model_copy(
            update={
                "sources": settings.sources.model_copy(
                    update={"full_text": True, "allow_private": True, "total_timeout": 2.0}
                )
            }
        )
        events: list[int] = []
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(lambda event: events.append(event.code), EVENT_ALL)
        feed_transport = httpx.MockTransport(handler)
        real = httpx.AsyncHTTPTransport()

        class Split(httpx.AsyncBaseTransport):
            """The feed from a mock, the pages from the real hanging loopback host."""

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if request.url.host == "feeds.example":
                    return await feed_transport.handle_async_request(request)
                return await real.handle_async_request(request)

            async def aclose(self) -> None:
                await real.aclose()

        async with (
            Store.open(settings.storage.url()) as store,
            httpx.AsyncClient(transport=Split()) as client,
        ):
            await store.sources.add("http://feeds.example/rss", interval_seconds=1)
            sync = app.Jobs(
                scheduler,
                *repositories(store),
                settings,
                client,
                qa.Index.build([]),
                None,  # type: ignore[arg-type]
            )
            await sync.sync()
            scheduler.start()
            try:
                await asyncio.sleep(3.3)  # three intervals of real scheduler time
            finally:
                scheduler.shutdown(wait=False)
            # Let a run still going finish before the store closes.
            for _ in range(100):
                finished = events.count(EVENT_JOB_EXECUTED) + events.count(EVENT_JOB_ERROR)
                if finished >= events.count(EVENT_JOB_SUBMITTED):
                    break
                await asyncio.sleep(0.05)
    assert events.count(EVENT_JOB_MAX_INSTANCES) == 0
    assert events.count(EVENT_JOB_EXECUTED) >= 3
    assert events.count(EVENT_JOB_ERROR) == 0


async def _poll_all(
    client: httpx.AsyncClient, store: Store, ids: list[int], now: datetime, gates: jobs.PollGates
) -> list[jobs.PollReport]:
    limits = FetchLimits(total_timeout=1.0, read_timeout=1.0)
    return list(
        await asyncio.gather(
            *(
                jobs.poll_feed(
                    client,
                    *repositories(store),
                    source_id,
                    limits=limits,
                    allow_private=True,
                    thresholds=Thresholds(),
                    now=now,
                    gates=gates,
                )
                for source_id in ids
            )
        )
    )


@pytest.mark.reliability
# A load test of the poll cycle (≈35 s on PostgreSQL here): the suite runs it once, on SQLite.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_five_hundred_feeds_one_cycle(store: Store) -> None:
    # Checklist 14: 500 feeds every 5 min on five hosts, in steady state (validators known):
    # 15 % with new entries, 5 % slow, 2 % failing, the rest unchanged.
    hosts = [f"127.0.0.{n}" for n in range(1, 6)]
    behaviours: dict[str, Any] = {}
    for n in range(500):
        kind = "fresh"
        if n % 20 == 0:
            kind = "slow"
        elif n % 50 == 1:
            kind = "fail"
        elif n % 20 in (2, 3, 4):
            kind = "new"
        behaviours[f"/f{n}"] = kind
    server = FeedServer(behaviours=behaviours, slow_seconds=0.3)
    async with server.serving(hosts) as ports, httpx.AsyncClient() as client:
        for n in range(500):
            host = hosts[n % 5]
            await store.sources.add(f"http://{host}:{ports[host]}/f{n}", interval_seconds=300)
        kind_of: dict[int, str] = {}
        for source in await store.sources.active():
            path = "/" + source.url.rsplit("/", 1)[1]
            kind_of[source.id] = behaviours[path]
            state = dataclasses.replace(source.state, etag=f'"{path}-0"')
            await store.sources.save_state(dataclasses.replace(source, state=state))
        ids = sorted(kind_of)
        failing = [i for i in ids if kind_of[i] == "fail"]
        gates = jobs.PollGates.per_host(4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        cycle = await _poll_all(client, store, ids, NOW, gates)
        seconds = loop.time() - started
        soon = await _poll_all(client, store, failing, NOW + timedelta(seconds=30), gates)
        later = await _poll_all(client, store, failing, NOW + timedelta(minutes=5), gates)
    counts = Counter(kind_of.values())
    assert counts == {"fresh": 390, "new": 75, "slow": 25, "fail": 10}
    assert seconds < 300  # the cycle ends well before the next interval
    assert max(server.peak.values()) <= 4  # the per-host cap, on every host
    # Unchanged feeds (slow ones included) cost a 304: the validators were sent and honoured.
    assert sum(r.not_modified for r in cycle) == server.not_modified == 415
    assert sum(r.counts.new for r in cycle) == 75 * 3
    assert sum(r.error is not None for r in cycle) == 10
    # Failing feeds back off: not fetched 30 s later, fetched again after the 60 s back-off.
    assert all(r.error is None and r.counts.new == 0 for r in soon)
    assert all(r.error for r in later)
    assert all(server.requests[f"/f{n}"] == 2 for n in range(1, 500, 50))
    assert {s.id for s in await store.sources.active() if s.state.failures == 2} == set(failing)
    print(f"500 feeds: cycle {seconds:.2f} s, peak per host {max(server.peak.values())}")


def _corpus_files() -> list[Path]:
    folders = [BADINPUT / name for name in ("illformed", "encoding", "entities", "hostile")]
    files = [f for d in folders if d.is_dir() for f in sorted(d.iterdir()) if f.suffix != ".gz"]
    if not files:
        pytest.skip(f"shared bad-input corpus not found at {BADINPUT}")
    return files


@pytest.mark.reliability
async def test_the_bad_input_corpus_is_stored_or_quarantined(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Checklist 16: every file of feedparser's ill-formed/encoding/entity corpora and ours.
    files = _corpus_files()
    documents = {f"https://bad.example/{f.parent.name}/{f.name}": f.read_bytes() for f in files}

    def handler(request: httpx.Request) -> httpx.Response:
        content = documents[str(request.url)]
        match = re.search(rb"Header:\s*([^\n]*)", content[:2000])
        headers = {}
        if match is not None:
            name, _, value = match.group(1).decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        return httpx.Response(200, content=content, headers=headers)

    for url in documents:
        await store.sources.add(url)
    caplog.set_level("WARNING", logger="bot.jobs")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        reports = {}
        for source in await store.sources.active():
            reports[source.url] = await jobs.poll_feed(
                client,
                *repositories(store),
                source.id,
                limits=FetchLimits(),
                allow_private=True,
                thresholds=Thresholds(),
                now=NOW,
            )
    states = {s.url: s for s in await store.sources.active()}
    stored: dict[str, list[Article]] = {}
    for article in await store.catalog.all_articles():
        stored.setdefault(article.source or "", []).append(article)
        for name in ("id", "title", "text", "lang", "published"):
            assert isinstance(getattr(article, name), str)
    bozo = quarantined = 0
    for url, report in reports.items():
        if report.error is not None:
            quarantined += 1
            assert states[url].state.last_error == report.error  # with its reason, backed off
            assert states[url].state.next_attempt is not None
            continue
        read = report.counts.new + report.counts.updated + report.counts.duplicate
        assert read == len(stored.get(url, [])) + report.counts.duplicate
        if report.bozo:
            bozo += 1
            assert any(
                url in r.getMessage() and "ill-formed" in r.getMessage() for r in caplog.records
            )
    assert len(reports) == len(files) >= 300
    assert bozo > 0 and quarantined > 0
    print(f"corpus: {len(files)} feeds, {bozo} bozo stored and logged, {quarantined} quarantined")


@pytest.mark.reliability
async def test_dates_duplicates_same_story_and_empty_documents(store: Store) -> None:
    # Checklist 20.
    story = (
        "<item><title>Army shells the town</title><link>https://wire.example/story/9</link>"
        "<description>Artillery hit the town overnight, officials said.</description></item>"
    )
    documents = {
        "https://a.example/rss": (
            '<rss version="2.0"><channel><title>A</title>'
            "<item><guid>same</guid><title>First</title><description>One.</description>"
            "<pubDate>not a date</pubDate></item>"
            "<item><guid>same</guid><title>Second</title><description>Two.</description></item>"
            f"{story}</channel></rss>"
        ).encode(),
        "https://b.example/rss": f'<rss version="2.0"><channel><title>B</title>{story}'
        "</channel></rss>".encode(),
        "https://c.example/rss": b"",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=documents[str(request.url)])

    for url in documents:
        await store.sources.add(url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        reports = [
            await jobs.poll_feed(
                client,
                *repositories(store),
                s.id,
                limits=FetchLimits(),
                allow_private=True,
                thresholds=Thresholds(),
                now=NOW,
            )
            for s in await store.sources.active()
        ]
    a, b, c = reports
    assert a.counts.new == 2  # the duplicate guid kept once, the story once
    assert b.counts.new == 0 and b.counts.duplicate == 1  # same story in a second feed
    assert c.counts.new == 0 and c.error is None  # the empty document is a no-op
    articles = {x.title: x for x in await store.catalog.all_articles()}
    assert set(articles) == {"First", "Army shells the town"}
    assert articles["First"].published == NOW.isoformat()  # garbage date: fetch time
    assert all(s.state.failures == 0 for s in await store.sources.active())


@pytest.mark.reliability
async def test_an_article_is_never_stored_without_its_verdict(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    article = Article("a", "Rebels shell Aleppo", "Fighting in Aleppo killed 20 civilians.", "en")

    def crashed(*args: object) -> list[Verdict]:
        raise RuntimeError("classifier crashed")

    monkeypatch.setattr(jobs, "classify_all", crashed)
    with pytest.raises(RuntimeError):
        await jobs.store_and_classify([article], store.catalog, thresholds=Thresholds())
    monkeypatch.undo()
    # The failed ingest left nothing behind, so the next one stores and classifies it.
    counts, classified = await jobs.store_and_classify(
        [article], store.catalog, thresholds=Thresholds()
    )
    assert counts.new == 1 and [a.id for a, _ in classified] == ["a"]
    assert [a.id for a, _ in await store.catalog.entries(["a"])] == ["a"]
    assert await store.catalog.unclassified() == []


@pytest.mark.reliability
async def test_articles_without_a_verdict_are_classified_and_routed_by_the_sweep(
    store: Store,
) -> None:
    await store.subscriptions.subscribe(CHAT, "en")
    # As an older version (or a crash between its two commits) left them.
    article = Article("a", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en")
    await store.catalog.add_articles([article])
    assert [a.id for a in await store.catalog.unclassified()] == ["a"]
    done = await jobs.classify_unclassified(
        *routing(store), None, thresholds=Thresholds(0.5, 0.3), now=NOW
    )
    assert done == 1 and await store.catalog.unclassified() == []
    [(_, stored)] = await store.catalog.entries(["a"])
    assert stored.conflict
    [row] = await store.ledger.deliveries()
    assert row["kind"] == "alert" and row["chat_id"] == CHAT.chat_id


@pytest.mark.reliability
async def test_a_pruned_story_still_listed_by_its_feed_is_not_alerted_again(
    store: Store,
) -> None:
    await store.subscriptions.subscribe(CHAT, "en")
    article = Article("g1", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en")
    thresholds = Thresholds(0.5, 0.3)

    async def poll(now: datetime) -> int:
        _, changed = await jobs.store_and_classify(
            [article], store.catalog, thresholds=thresholds, seen_at=now
        )
        return await jobs.route(changed, *routing(store), None, alert_threshold=0.5, now=now)

    # The ledger stamps rows with the real time, so this story happens now.
    start = datetime.now(UTC)
    assert await poll(start) == 1
    await store.ledger.mark_sent((await store.ledger.deliveries())[0]["id"], start, ["1"], 0)
    later = start + timedelta(days=31)
    await jobs.prune(store.catalog, store.ledger, retention=timedelta(days=30), now=later)
    assert await store.catalog.count_articles() == 0 and await store.ledger.deliveries() == []
    # The feed still lists the entry a month later: it is not news, and nobody is alerted.
    assert await poll(later) == 0
    assert await store.ledger.deliveries() == []
    # A corrected version of it is news again.
    article = dataclasses.replace(article, text="Heavy fighting in Aleppo killed 25.")
    assert await poll(later) == 1


async def test_a_second_agency_reporting_the_same_event_does_not_alert_the_chat_again(
    store: Store,
) -> None:
    await store.subscriptions.subscribe(CHAT, "en")
    when = (NOW - timedelta(hours=3)).isoformat()
    reuters = Article(
        "quake-r",
        "Earthquake kills six in Iran's Kermanshah province",
        "DUBAI, March 29 (Reuters) - A magnitude 6.1 earthquake struck the western Iranian "
        "province of Kermanshah before dawn on Sunday, killing six people and injuring 140 in "
        "the town of Sarpol-e Zahab, the Red Crescent said.",
        "en",
        agency="Reuters",
        published=when,
    )
    ap = Article(
        "quake-ap",
        "Strong quake hits western Iran near the Iraqi border",
        "TEHRAN, Iran (AP) — Homes collapsed in Sarpol-e Zahab when a 6.1 magnitude quake shook "
        "Kermanshah on Sunday. State TV said six people died and about 140 were hurt as "
        "rescuers searched damaged villages.",
        "en",
        agency="AP",
        published=(NOW - timedelta(hours=2)).isoformat(),
    )
    other = Article(
        "flood-ap",
        "Flash floods sweep cars away in Iran's Shiraz",
        "TEHRAN, Iran (AP) — Flash floods after a cloudburst swept cars through the streets of "
        "Shiraz in southern Iran on Sunday evening, killing two motorists, the governor of Fars "
        "province said.",
        "en",
        agency="AP",
        published=(NOW - timedelta(hours=1)).isoformat(),
    )
    await store.catalog.add_articles([reuters])
    first = await jobs.route(
        [(reuters, verdict("quake-r", topics=("Iran",)))],
        *routing(store),
        None,
        alert_threshold=0.8,
        now=NOW,
    )
    assert first == 1
    await store.catalog.add_articles([ap])
    again = await jobs.route(
        [(ap, verdict("quake-ap", topics=("Iran",)))],
        *routing(store),
        None,
        alert_threshold=0.8,
        now=NOW,
    )
    assert again == 0  # the second agency's report joins the story the chat was alerted to
    await store.catalog.add_articles([other])
    owed = await jobs.route(
        [(other, verdict("flood-ap", topics=("Iran",)))],
        *routing(store),
        None,
        alert_threshold=0.8,
        now=NOW,
    )
    assert owed == 1  # another event in the same country that day is its own alert
    assert await store.catalog.story_ids(["quake-r", "quake-ap", "flood-ap"]) == {
        "quake-r": "quake-r",
        "quake-ap": "quake-r",
        "flood-ap": "flood-ap",
    }


# One event per feed entry, so that every new entry is a story of its own and alerts anew.
EVENTS = (
    ("Rebels shell Aleppo", "Heavy fighting and air strikes killed 20 civilians in Aleppo, Syria."),
    ("Troops storm Kharkiv", "Shelling and fighting killed 12 soldiers in Kharkiv, Ukraine."),
    ("Air strikes hit Gaza", "Israeli air strikes killed 30 people in Gaza City."),
    ("Militia attacks Goma", "Rebel fighters attacked Goma, Congo; 15 civilians were killed."),
    ("Clashes in Khartoum", "Fighting between army and paramilitaries killed 40 in Khartoum."),
    ("Bomb in Mogadishu", "A car bomb killed 9 people in Mogadishu, Somalia, police said."),
)


def _owed(rows: list[dict[str, Any]], chat_id: str) -> set[str]:
    """The article ids of the alerts owed to one chat."""
    return {
        json.loads(row["payload"])["article_id"]
        for row in rows
        if row["kind"] == "alert" and row["chat_id"] == chat_id
    }


@pytest.mark.reliability
async def test_a_feed_a_chat_added_alerts_only_the_chats_that_own_it(
    store: Store, settings: config.Settings
) -> None:
    """The reviewer's reproduction: chat 111's own feed was owed to every subscriber."""
    a, b = ChatRef("telegram", "111"), ChatRef("telegram", "222")
    conversation = Conversation(
        *repositories(store), qa.Index.build([]), settings, clock=lambda: NOW
    )
    for chat in (a, b):
        await conversation.handle(Inbound(chat, "/subscribe", user="u"))
    server = FeedServer(behaviours={"/good": "new"}, events=EVENTS)
    args: dict[str, Any] = {
        "limits": FetchLimits(),
        "allow_private": True,
        "thresholds": Thresholds(0.5, 0.3),
    }
    async with server.serving(["127.0.0.1"]) as ports, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{ports['127.0.0.1']}/good"
        [added] = await conversation.handle(Inbound(a, f"/sources add {url}", user="u"))
        assert "Added feed" in str(added)
        [feed] = await store.sources.active()

        async def poll(minutes: int) -> set[str]:
            report = await jobs.poll_feed(
                client, *repositories(store), feed.id, now=NOW + timedelta(minutes=minutes), **args
            )
            return {article.id for article, _ in report.changed}

        first = await poll(0)
        assert len(first) == 3
        rows = await store.ledger.deliveries()
        assert _owed(rows, "111") == first
        assert _owed(rows, "222") == set()
        # B's digest lists none of A's own feed; A's lists them.
        [digest_b] = await conversation.handle(Inbound(b, "/digest", user="u"))
        [digest_a] = await conversation.handle(Inbound(a, "/digest", user="u"))
        assert isinstance(digest_a, Digest) and isinstance(digest_b, Digest)
        assert {item.article_id for item in digest_a.items} == first
        assert digest_b.items == ()
        # B adds the same feed, written another way: B is told it was added, and owns it too.
        [also] = await conversation.handle(
            Inbound(b, f"/sources add {url.replace('http://', 'HTTP://')}?#top", user="u")
        )
        assert "Added feed" in str(also)
        [shared] = await store.sources.active()
        assert shared.id == feed.id and shared.owners == {"telegram:111", "telegram:222"}
        [listing] = await conversation.handle(Inbound(b, "/sources", user="u"))
        assert f"{feed.id}. {url}" in str(listing)
        second = await poll(10)
        assert len(second) == 1
        rows = await store.ledger.deliveries()
        assert second <= _owed(rows, "222") and second <= _owed(rows, "111")
        # A gives it up: B still gets its entries; A gets nothing more.
        owed_a = _owed(rows, "111")
        [gone] = await conversation.handle(Inbound(a, f"/sources remove {feed.id}", user="u"))
        assert "Removed feed" in str(gone)
        [listing_a] = await conversation.handle(Inbound(a, "/sources", user="u"))
        assert "has not added any feeds" in str(listing_a)
        third = await poll(20)
        assert len(third) == 1
        rows = await store.ledger.deliveries()
        assert _owed(rows, "222") == second | third and _owed(rows, "111") == owed_a
        # B gives it up too: nobody owns it, and it is no longer polled.
        await conversation.handle(Inbound(b, f"/sources remove {url}", user="u"))
        assert await store.sources.active() == []
        requests = server.requests["/good"]
        assert await poll(30) == set()
        assert server.requests["/good"] == requests


async def test_a_digest_leaves_out_other_chats_own_feeds(store: Store) -> None:
    prefs = Preferences(digest_every_hours=1)
    a, b = ChatRef("telegram", "111"), ChatRef("slack", "C2")
    for chat in (a, b):
        await store.subscriptions.subscribe(chat, "en", prefs)
    await store.sources.add("https://wire.example/rss")  # the config file's
    await store.sources.add("https://own.example/rss", added_by="telegram:111")
    later = datetime.now(UTC) + timedelta(minutes=1)
    found = [
        Article("pub", "Rebels shell Aleppo", "Fighting in Aleppo.", "en", source=None),
        Article(
            "wire",
            "Troops cross the border",
            "Fighting near Kharkiv.",
            "en",
            source="https://wire.example/rss",
        ),
        Article(
            "own",
            "Air strikes on Gaza",
            "Air strikes killed 20 in Gaza.",
            "en",
            source="https://own.example/rss",
        ),
    ]
    await store.catalog.add_articles(found, seen_at=later)
    await store.catalog.save_verdicts([verdict(article.id) for article in found])
    kwargs: dict[str, Any] = {"digest_threshold": 0.5, "max_items": 20, "empty_message": False}
    for chat in (a, b):
        sub = await store.subscriptions.subscription(chat)
        assert sub is not None
        now = sub.created_at + timedelta(hours=2)
        assert await jobs.digest_due(*digesting(store), None, sub.id, now=now, **kwargs)
    chosen = {
        row["chat_id"]: set(json.loads(row["payload"])["article_ids"])
        for row in await store.ledger.deliveries()
    }
    assert chosen == {"111": {"pub", "wire", "own"}, "C2": {"pub", "wire"}}


@pytest.mark.reliability
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_failed_routing_pass_is_owed_by_the_next_sweep_once(
    store: Store, settings: config.Settings
) -> None:
    """Issue 1 of the review: a route() that raises (the database locked by another writer)
    after the articles were stored lost their alerts for good; the sweep owes them once."""
    import sqlite3

    await store.subscriptions.subscribe(CHAT, "en")
    thresholds = Thresholds(0.5, 0.3)
    article = Article("a", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en")
    _, changed = await jobs.store_and_classify(
        [article], store.catalog, thresholds=thresholds, seen_at=NOW
    )
    # Another process holds SQLite's write lock for longer than the busy timeout.
    path = sa.make_url(settings.storage.url()).database
    assert path is not None
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            await jobs.route(changed, *routing(store), None, alert_threshold=0.5, now=NOW)
    finally:
        other.rollback()
        other.close()
    assert await store.ledger.deliveries() == []
    # Stored, so not new to the next ingest of the same text: only the sweep can owe it.
    assert (await jobs.store_and_classify([article], store.catalog, thresholds=thresholds))[1] == []
    window = timedelta(hours=6)

    async def sweep(now: datetime) -> int:
        return await jobs.route_unrouted(
            *routing(store), None, alert_threshold=0.5, now=now, window=window
        )

    # A restart a week later leaves it alone: stale news is not alerted.
    assert await sweep(NOW + timedelta(days=7)) == 0
    assert await sweep(NOW + timedelta(minutes=5)) == 1
    [row] = await store.ledger.deliveries()
    assert row["kind"] == "alert" and row["chat_id"] == CHAT.chat_id
    assert json.loads(row["payload"])["article_id"] == "a"
    # Routed now: the next sweep finds nothing, and routing it again owes nothing twice.
    assert await sweep(NOW + timedelta(minutes=6)) == 0
    assert await jobs.route(changed, *routing(store), None, alert_threshold=0.5, now=NOW) == 0
    assert len(await store.ledger.deliveries()) == 1


async def test_the_sweep_routes_a_chat_feeds_unrouted_articles_only_to_its_owners(
    store: Store,
) -> None:
    """Routing after a kill knows a chat's own feed from the article: only its owners."""
    owner, other = ChatRef("telegram", "111"), ChatRef("telegram", "222")
    for chat in (owner, other):
        await store.subscriptions.subscribe(chat, "en")
    url = "https://own.example/rss"
    await store.sources.add(url, added_by="telegram:111")
    found = [
        Article(
            "own", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20.", "en", source=url
        ),
        Article("pub", "Troops cross the border", "Fighting near Kharkiv killed 7.", "en"),
    ]
    # Stored and classified, then killed before routing.
    await jobs.store_and_classify(
        found, store.catalog, thresholds=Thresholds(0.5, 0.3), seen_at=NOW
    )
    done = await jobs.route_unrouted(
        *routing(store), None, alert_threshold=0.5, now=NOW, window=timedelta(hours=6)
    )
    assert done == 2
    rows = await store.ledger.deliveries()
    assert _owed(rows, "111") == {"own", "pub"} and _owed(rows, "222") == {"pub"}


OWN_A, OWN_B = "https://own-a.example/rss", "https://own-b.example/rss"
RAID = Article("x", "Rebels shell Aleppo", "Heavy fighting in Aleppo killed 20 civilians.", "en")


async def _carried_by(store: Store, source: str, article_id: str, minutes: int) -> int:
    """One source delivers the raid's text (under its own id): store, route, sweep."""
    now = NOW + timedelta(minutes=minutes)
    article = dataclasses.replace(RAID, id=article_id, source=source)
    _, changed = await jobs.store_and_classify(
        [article], store.catalog, thresholds=Thresholds(0.5, 0.3), seen_at=now
    )
    owed = await jobs.route(changed, *routing(store), None, alert_threshold=0.5, now=now)
    return owed + await jobs.route_unrouted(
        *routing(store), None, alert_threshold=0.5, now=now, window=timedelta(hours=6)
    )


async def _audience(store: Store) -> tuple[dict[str, int], set[str]]:
    """Alerts owed per chat, and the chats whose digest lists the raid."""
    rows = await store.ledger.deliveries()
    owed = Counter(row["chat_id"] for row in rows if row["kind"] == "alert")
    listed = set()
    for chat_id in ("111", "222", "333"):
        flagged = await store.catalog.flagged(0.3, visible_to=f"telegram:{chat_id}")
        if flagged:
            listed.add(chat_id)
    return dict(owed), listed


async def _chats(store: Store) -> None:
    for chat_id in ("111", "222", "333"):
        await store.subscriptions.subscribe(ChatRef("telegram", chat_id), "en")
    await store.sources.add(OWN_A, added_by="telegram:111")
    await store.sources.add(OWN_B, added_by="telegram:222")


@pytest.mark.reliability
async def test_a_chat_feeds_article_reaches_everyone_once_a_public_source_carries_it(
    store: Store,
) -> None:
    """Issue 2 of the review: chat 111's own feed carried the text first; the folder's copy
    was a duplicate, so nobody else ever got the alert, the digest entry or the answers."""
    await _chats(store)
    await _carried_by(store, OWN_A, "a#1", 0)
    assert await _audience(store) == ({"111": 1}, {"111"})
    assert await store.catalog.shown_despite_source("telegram:222") == frozenset()
    # The same text in the shared folder: a duplicate, which widens the audience to all.
    await _carried_by(store, "/srv/articles/raid.txt", "raid.txt", 5)
    assert await _audience(store) == ({"111": 1, "222": 1, "333": 1}, {"111", "222", "333"})
    assert await store.catalog.shown_despite_source("telegram:222") == {"a#1"}
    assert await store.catalog.count_articles() == 1
    # Carried again by either: nothing more for anyone.
    await _carried_by(store, "/srv/articles/raid.txt", "raid.txt", 10)
    await _carried_by(store, OWN_A, "a#1", 15)
    assert await _audience(store) == ({"111": 1, "222": 1, "333": 1}, {"111", "222", "333"})
    # The file is deleted: the folder no longer vouches for the text (sent alerts stay sent).
    assert "/srv/articles/raid.txt" in await store.catalog.file_sources("/srv/articles/")
    assert await store.catalog.forget_source("/srv/articles/raid.txt") == 0
    assert await _audience(store) == ({"111": 1, "222": 1, "333": 1}, {"111"})


@pytest.mark.reliability
async def test_a_public_article_stays_public_when_a_chat_feed_carries_it_too(
    store: Store,
) -> None:
    await _chats(store)
    await _carried_by(store, "/srv/articles/raid.txt", "raid.txt", 0)
    everyone = ({"111": 1, "222": 1, "333": 1}, {"111", "222", "333"})
    assert await _audience(store) == everyone
    await _carried_by(store, OWN_A, "a#1", 5)
    assert await _audience(store) == everyone
    # Not routed again: a chat that subscribed since is not alerted about older news.
    await store.subscriptions.subscribe(ChatRef("telegram", "444"), "en")
    await _carried_by(store, OWN_B, "b#1", 10)
    assert (await _audience(store))[0] == everyone[0]


@pytest.mark.reliability
async def test_two_chats_own_feeds_carrying_one_text_reach_both_owners_only(
    store: Store,
) -> None:
    await _chats(store)
    await _carried_by(store, OWN_A, "a#1", 0)
    assert await _audience(store) == ({"111": 1}, {"111"})
    await _carried_by(store, OWN_B, "b#1", 5)
    assert await _audience(store) == ({"111": 1, "222": 1}, {"111", "222"})
    assert await store.catalog.shown_despite_source("telegram:222") == {"a#1"}
    assert await store.catalog.shown_despite_source("telegram:333") == frozenset()


@pytest.mark.reliability
async def test_a_feed_poll_whose_routing_failed_is_owed_by_the_sweep_not_lost_to_its_304(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 1 of the review, feed path: the entries and the feed's validators were committed,
    routing failed; the next poll is a 304, so only the sweep can still owe the alert."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(
            200, content=RSS, headers={"ETag": '"v1"', "Content-Type": "application/rss+xml"}
        )

    await store.subscriptions.subscribe(CHAT, "en")
    await store.sources.add("https://news.example/feed.xml", name="Wire")
    [source] = await store.sources.active()
    original = store.ledger.enqueue_many

    async def unreachable(*args: Any, **kwargs: Any) -> int:
        raise sa.exc.OperationalError("INSERT INTO deliveries", {}, Exception("server closed"))

    args: dict[str, Any] = {
        "limits": FetchLimits(),
        "allow_private": True,
        "thresholds": Thresholds(0.5, 0.3),
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        monkeypatch.setattr(store.ledger, "enqueue_many", unreachable)
        with pytest.raises(sa.exc.OperationalError):
            await jobs.poll_feed(client, *repositories(store), source.id, now=NOW, **args)
        monkeypatch.setattr(store.ledger, "enqueue_many", original)
        later = NOW + timedelta(minutes=10)
        second = await jobs.poll_feed(client, *repositories(store), source.id, now=later, **args)
        assert second.not_modified and await store.ledger.deliveries() == []
    done = await jobs.route_unrouted(
        *routing(store), None, alert_threshold=0.5, now=later, window=timedelta(hours=6)
    )
    assert done == 1
    [row] = await store.ledger.deliveries()
    assert row["kind"] == "alert" and row["chat_id"] == CHAT.chat_id


async def test_a_later_report_widened_after_the_story_window_keeps_its_story(
    store: Store,
) -> None:
    """Routed again days later (a new source widening its audience), an article is keyed by
    the story it was alerted under: its owner is not alerted a second time."""
    await _chats(store)
    first = Article(
        "r1",
        "Rebels shell Aleppo, 20 civilians killed",
        "ALEPPO, March 29 (Reuters) - Rebel artillery shelled the Syrian city of Aleppo on "
        "Sunday, killing 20 civilians in the Salaheddine district, a monitor said.",
        "en",
        source=OWN_A,
    )
    later = Article(
        "r2",
        "Shelling of Aleppo's Salaheddine district kills 20",
        "BEIRUT (AP) - Twenty civilians died when rebels fired artillery at Salaheddine in "
        "Aleppo, Syria, on Sunday, the Syrian Observatory said.",
        "en",
        source=OWN_A,
    )
    thresholds = Thresholds(0.5, 0.3)
    for minutes, article in ((0, first), (5, later)):
        now = NOW + timedelta(minutes=minutes)
        _, changed = await jobs.store_and_classify(
            [article], store.catalog, thresholds=thresholds, seen_at=now
        )
        await jobs.route(changed, *routing(store), None, alert_threshold=0.5, now=now)
    assert await store.catalog.story_ids(["r2"]) == {"r2": "r1"}
    assert (await _audience(store))[0] == {"111": 1}
    # Four days on (beyond the three-day story window) the folder carries the later report.
    days = NOW + timedelta(days=4)
    folder_copy = dataclasses.replace(later, id="r2.txt", source="/srv/articles/r2.txt")
    await jobs.store_and_classify([folder_copy], store.catalog, thresholds=thresholds, seen_at=days)
    done = await jobs.route_unrouted(
        *routing(store), None, alert_threshold=0.5, now=days, window=timedelta(hours=6)
    )
    assert done == 1
    rows = await store.ledger.deliveries()
    assert (await _audience(store))[0] == {"111": 1, "222": 1, "333": 1}
    assert {row["key"] for row in rows} == {"r1"}
