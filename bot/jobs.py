"""Units of work for the scheduler and the CLI: ingest, poll feeds, route alerts, digests, prune."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from bot import articles, cluster, collector, digest, feeds, logs, messages, metrics, qa, schedule
from bot.catalog import Catalog, IngestCounts
from bot.classify import Correction, classify
from bot.fetch import HostGate
from bot.ledger import AlertOwed, DigestOwed, Ledger, NoticeOwed, Owed
from bot.models import Article, ChatRef, Thresholds, Verdict
from bot.outbox import Outbox
from bot.sources import Sources, owner_of
from bot.subscriptions import Subscriptions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestReport:
    """What one ingest did: counts, rejections, and the new or changed articles with verdicts."""

    counts: IngestCounts = field(default_factory=IngestCounts)
    rejected: list[articles.Rejection] = field(default_factory=list)
    changed: list[tuple[Article, Verdict]] = field(default_factory=list)

    @property
    def read(self) -> int:
        """How many articles were read, whatever happened to them."""
        return self.counts.new + self.counts.updated + self.counts.duplicate


def classify_all(
    batch: Sequence[Article], thresholds: Thresholds, model: Correction | None = None
) -> list[Verdict]:
    """Verdicts for a batch, in order."""
    with collector.paused():  # the batch's objects hold no cycles (see bot.collector)
        return [classify(article, thresholds, model) for article in batch]


async def ingest(
    paths: Sequence[Path],
    catalog: Catalog,
    *,
    thresholds: Thresholds,
    max_bytes: int = 5_000_000,
    languages: Sequence[str] = ("de", "en"),
    model: Correction | None = None,
    index: qa.Retrieval | None = None,
) -> IngestReport:
    """Read files, store new/changed articles, classify them, and add them to the QA index."""
    # File reading is blocking disk work: keep the event loop free for chats meanwhile.
    results = await asyncio.to_thread(lambda: list(articles.read(paths, max_bytes, languages)))
    report = IngestReport()
    found: list[Article] = []
    for result in results:
        if isinstance(result, articles.Rejection):
            log.warning("rejected %s: %s", result.where, result.reason)
            report.rejected.append(result)
        else:
            found.append(result)
    report.counts, report.changed = await store_and_classify(
        found, catalog, thresholds=thresholds, model=model, index=index
    )
    return report


async def store_and_classify(
    found: Sequence[Article],
    catalog: Catalog,
    *,
    thresholds: Thresholds,
    model: Correction | None = None,
    index: qa.Retrieval | None = None,
    seen_at: datetime | None = None,
) -> tuple[IngestCounts, list[tuple[Article, Verdict]]]:
    """Store articles; classify the new and changed ones and add them to the QA index.

    Articles and their verdicts are committed together: a failure in between (the classifier,
    the database, a kill) leaves neither, so the next ingest sees the articles as new again.
    """
    # Classification is CPU work: keep the event loop free for chats meanwhile.
    pending = await catalog.pending_changes(found)
    verdicts = await asyncio.to_thread(classify_all, pending, thresholds, model)
    by_id = {verdict.article_id: verdict for verdict in verdicts}
    counts, changed = await catalog.add_articles(found, seen_at=seen_at, verdicts=by_id)
    if not changed:
        return counts, []
    # Another writer changed the store in between: classify what was not foreseen now.
    late = [article for article in changed if article.id not in by_id]
    if late:
        extra = await asyncio.to_thread(classify_all, late, thresholds, model)
        await catalog.save_verdicts(extra)
        by_id.update((verdict.article_id, verdict) for verdict in extra)
    classified = [(article, by_id[article.id]) for article in changed]
    if index is not None:
        for article, verdict in classified:
            index.add(article, verdict.score)
    metrics.count_stored(classified)
    return counts, classified


async def classify_unclassified(
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox | None,
    *,
    thresholds: Thresholds,
    now: datetime,
    model: Correction | None = None,
    index: qa.Retrieval | None = None,
    batch: int = 500,
    stories: StoryIndex | None = None,
) -> int:
    """Classify and route stored articles that have no verdict yet; return how many."""
    # Databases written before verdicts were committed with their articles can hold such rows.
    done = 0
    while pending := await catalog.unclassified(limit=batch):
        verdicts = await asyncio.to_thread(classify_all, pending, thresholds, model)
        await catalog.save_verdicts(verdicts)
        classified = list(zip(pending, verdicts, strict=True))
        if index is not None:
            for article, verdict in classified:
                index.add(article, verdict.score)
        await route(
            classified,
            sources,
            catalog,
            subscriptions,
            ledger,
            outbox,
            alert_threshold=thresholds.alert,
            now=now,
            stories=stories,
        )
        done += len(pending)
    if done:
        log.info("classified %d stored articles that had no verdict", done)
    return done


# Kept here for callers of the jobs API; the filter itself is the digest's.
wants = digest.wants


# Story lookups read only the start of a text (the event signature reads its first 600
# characters): the index loads that much, not whole articles.
SIGNATURE_CHARS = 2000


@dataclass(slots=True)
class _Generation:
    """The stories of articles seen within one slice of the story window."""

    start: datetime
    stories: cluster.Stories = field(default_factory=cluster.Stories)
    ids: dict[str, str] = field(default_factory=dict)


class StoryIndex:
    """Recent articles' stories, kept across routing passes so a pass costs only its batch.

    Built from the store on first use (and again after `reset`, when this instance becomes the
    leader: another one routed meanwhile), then updated with every routed batch. The window is
    cut into `parts` slices; a slice is dropped once all of it is older than the window, so an
    article is compared with reports of the last `window` (up to one slice more) — or, when
    more than `limit` articles are indexed, with those of the newest slices that hold about
    `limit` (each costs some 18 KB: 20,000 are 350 MB; one batch is always compared within
    itself). An index that is not `kept` is rebuilt for every pass: a follower on a shared
    database routes only what lands in its own folder, while the leader routes the rest.
    """

    def __init__(
        self, window: timedelta = timedelta(days=3), parts: int = 12, limit: int = 20_000
    ) -> None:
        self.window, self.limit = window, limit
        self.kept = True
        self._span = window / parts
        self._generations: list[_Generation] = []  # oldest first
        self._loaded = False
        # Passes run their comparisons in worker threads: one at a time on the shared index.
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """Forget everything: the next pass rebuilds the index from the store."""
        self._generations, self._loaded = [], False

    def __len__(self) -> int:
        return sum(len(generation.ids) for generation in self._generations)

    async def assign(
        self, catalog: Catalog, batch: Sequence[Article], now: datetime
    ) -> dict[str, str]:
        """Story id of each article of a stored batch: an earlier report's, else its own id."""
        async with self._lock:
            if not self._loaded:
                known = await catalog.recent(
                    now - self.window, limit=self.limit + len(batch), text_chars=SIGNATURE_CHARS
                )
                # Comparing event signatures is CPU work: keep the event loop free meanwhile.
                await asyncio.to_thread(self._load, known, {article.id for article in batch})
                self._loaded = True
            assigned = await asyncio.to_thread(self._assign, batch, now)
            if not self.kept:
                self.reset()
            return assigned

    def _load(self, known: Sequence[tuple[Article, str, datetime]], batch: set[str]) -> None:
        with collector.paused():  # signatures hold no cycles (see bot.collector)
            self._load_all(known, batch)

    def _load_all(self, known: Sequence[tuple[Article, str, datetime]], batch: set[str]) -> None:
        self._generations = []
        for article, story_id, seen_at in reversed(known):  # oldest first
            # The batch is stored before it is routed: its own id says nothing yet, and it
            # must not be found as its own earlier report.
            if article.id in batch and story_id == article.id:
                continue
            self._add(article, story_id, seen_at)

    def _assign(self, batch: Sequence[Article], now: datetime) -> dict[str, str]:
        with collector.paused():  # signatures hold no cycles (see bot.collector)
            return self._assign_all(batch, now)

    def _assign_all(self, batch: Sequence[Article], now: datetime) -> dict[str, str]:
        self._expire(now)
        assigned: dict[str, str] = {}
        for article in batch:
            # One signature and one set of lookup keys per article, whatever the slices.
            sig = cluster.signature(article)
            keys = cluster.lookup_keys(sig)
            # An edited article keeps its story: the ledger keys alerts by story, so it
            # alerts again only if it newly crosses the threshold.
            story = self._known(article.id) or self._find(sig, keys) or article.id
            assigned[article.id] = story
            self._add(article, story, now, sig, keys)
        return assigned

    def _known(self, article_id: str) -> str | None:
        for generation in reversed(self._generations):
            if article_id in generation.ids:
                return generation.ids[article_id]
        return None

    def _find(self, sig: cluster.Signature, keys: Sequence[str]) -> str | None:
        # Newest first: the latest report of an event is the likeliest match.
        for generation in reversed(self._generations):
            story = generation.stories.find_signature(sig, keys)
            if story is not None:
                return story
        return None

    def _add(
        self,
        article: Article,
        story_id: str,
        seen_at: datetime,
        sig: cluster.Signature | None = None,
        keys: Sequence[str] | None = None,
    ) -> None:
        start = _slice_start(seen_at, self._span)
        generation = next((g for g in reversed(self._generations) if g.start <= start), None)
        if generation is None or generation.start < start:
            generation = _Generation(start)
            self._generations.append(generation)
            self._generations.sort(key=lambda g: g.start)
        if sig is None:
            sig = cluster.signature(article)
        generation.stories.add_signature(
            sig, keys if keys is not None else cluster.lookup_keys(sig), story_id
        )
        generation.ids[article.id] = story_id

    def _expire(self, now: datetime) -> None:
        oldest = now - self.window
        self._generations = [g for g in self._generations if g.start + self._span > oldest]
        while len(self._generations) > 1 and len(self) > self.limit:
            del self._generations[0]


def _slice_start(moment: datetime, span: timedelta) -> datetime:
    seconds = span.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, moment.tzinfo)


async def route(
    changed: Sequence[tuple[Article, Verdict]],
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox | None,
    *,
    alert_threshold: float,
    now: datetime,
    story_window: timedelta = timedelta(days=3),
    stories: StoryIndex | None = None,
) -> int:
    """Cluster new articles into stories; owe each subscriber one alert per alert-worthy story.

    `stories` is the process's index kept across passes; without one, a pass builds its own
    from the store (the CLI's single passes). An article only chat-added feeds carried is for
    the chats that own them (any thread of such a chat); any other is for every subscriber. The
    verdicts are marked routed in the transaction that owes their alerts: routing them again
    (the sweep after a kill) owes nothing twice, the ledger's keys see to that.
    """
    if not changed:
        return 0
    index = stories if stories is not None else StoryIndex(story_window)
    assigned = await index.assign(catalog, [article for article, _ in changed], now)
    # An article routed before keeps the story it was alerted under (the ledger's key), even
    # once it is older than the index's window: routed again (the sweep after a kill, a new
    # source widening its audience), it must find the same key.
    stored = await catalog.story_ids(list(assigned))
    assigned.update(
        (article_id, story) for article_id, story in stored.items() if story != article_id
    )
    await catalog.set_stories(assigned)
    active = await subscriptions.active()
    # A chat's own feed alerts only the chats that own it: anyone else's subscribers would get
    # whatever a group admin chose to add. An article every source of which is such a feed is
    # for their owners together; once a public source carried it too, for everyone.
    carried = await catalog.sources_of([article.id for article, _ in changed])
    private = await sources.private_owners(
        source for carriers in carried.values() for source in carriers if source
    )
    wanted: list[tuple[ChatRef, str, Owed, datetime | None]] = []
    for article, verdict in changed:
        carriers = carried.get(article.id) or {article.source or ""}
        owners: set[str] | None = None
        if all(source in private for source in carriers):
            owners = set().union(*(private[source] for source in carriers))
        for subscription in active:
            if owners is not None and owner_of(subscription.chat) not in owners:
                continue
            prefs = subscription.prefs
            threshold = (
                prefs.alert_threshold if prefs.alert_threshold is not None else alert_threshold
            )
            if not prefs.alerts or verdict.score < threshold or not wants(prefs, article, verdict):
                continue
            # Keyed by story: a later report of the same event, or a re-ingest from another
            # source, can never alert the same chat twice.
            wanted.append(
                (
                    subscription.chat,
                    assigned[article.id],
                    AlertOwed(article.id, subscription.lang),
                    schedule.quiet_until(prefs, now),
                )
            )
    owed = await ledger.enqueue_many(wanted, routed=[article.id for article, _ in changed])
    if owed and outbox is not None:
        outbox.wake()
    return owed


async def route_unrouted(
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox | None,
    *,
    alert_threshold: float,
    now: datetime,
    window: timedelta,
    stories: StoryIndex | None = None,
    batch: int = 500,
    writes: asyncio.Lock | None = None,
) -> int:
    """Route the verdicts stored but never routed (a kill or failure in between) of articles
    seen within `window`; return how many. Older ones are stale news: they stay unalerted.

    `writes`: the feed jobs' store lock, held for one batch at a time (see PollGates).
    """
    done = 0
    while True:
        async with writes if writes is not None else contextlib.nullcontext():
            pending = await catalog.unrouted(now - window, limit=batch)
            if not pending:
                break
            await route(
                pending,
                sources,
                catalog,
                subscriptions,
                ledger,
                outbox,
                alert_threshold=alert_threshold,
                now=now,
                stories=stories,
            )
        done += len(pending)
    if done:
        log.info("routed %d stored articles whose alerts were never owed", done)
    return done


async def digest_due(
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    outbox: Outbox | None,
    subscription_id: int,
    *,
    digest_threshold: float,
    max_items: int,
    empty_message: bool,
    now: datetime,
    grace: timedelta = timedelta(hours=6),
) -> bool:
    """Owe a chat the digest of its latest schedule slot, once; False when nothing was owed."""
    subscription = await subscriptions.subscription_by_id(subscription_id)
    if subscription is None or not subscription.active:
        return False
    slot = schedule.last_slot(subscription.prefs, now)
    if slot is None or now - slot > grace or slot <= subscription.created_at:
        return False
    if subscription.last_digest_at is not None and subscription.last_digest_at >= slot:
        return False
    since = subscription.last_digest_at or subscription.created_at
    flagged = await catalog.flagged(
        digest_threshold, since=since, limit=max_items * 5, visible_to=owner_of(subscription.chat)
    )
    firsts = await catalog.story_ids([article.id for article, _, _ in flagged])
    chosen = [
        article.id
        for article, verdict, _ in flagged
        # Later reports of a story appear as "also reported by" under the first one.
        if firsts.get(article.id, article.id) == article.id
        and wants(subscription.prefs, article, verdict)
    ][:max_items]
    owed = False
    if chosen or empty_message:
        what: Owed = (
            DigestOwed(tuple(chosen), since, subscription.lang)
            if chosen
            else NoticeOwed(messages.text(subscription.lang, "empty"), subscription.lang)
        )
        owed = await ledger.enqueue(subscription.chat, slot.isoformat(), what)
    await subscriptions.mark_digest(subscription.id, slot)
    if owed and outbox is not None:
        outbox.wake()
    return owed


async def prune(catalog: Catalog, ledger: Ledger, *, retention: timedelta, now: datetime) -> None:
    """Delete articles and finished deliveries older than the retention period."""
    before = now - retention
    articles_gone, deliveries_gone = await catalog.prune(before), await ledger.prune(before)
    if articles_gone or deliveries_gone:
        log.info("pruned %d articles and %d deliveries", articles_gone, deliveries_gone)


@dataclass(slots=True)
class PollReport(IngestReport):
    """What one poll did: the ingest report plus how the fetch went."""

    not_modified: bool = False
    error: str | None = None
    bozo: str | None = None


@dataclass(slots=True)
class PollGates:
    """What all feed jobs of one process share: the per-host cap, how many run at once, stories.

    `polls` bounds feed jobs in progress (the scheduler starts every feed at once after a
    start: 6,000 at once exhausted the database connection pool); `writes` lets them store one
    at a time (on SQLite concurrent write transactions fail at once with "database is locked");
    `stories` is the story index every poll routes through (rebuilt per poll, routing cost
    grew with the feeds times the articles of the story window).
    """

    hosts: HostGate
    polls: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(POLLS_AT_ONCE))
    writes: asyncio.Lock = field(default_factory=asyncio.Lock)
    stories: StoryIndex = field(default_factory=StoryIndex)

    @classmethod
    def per_host(cls, per_host: int, stories: StoryIndex | None = None) -> PollGates:
        """Gates with `per_host` requests at once to one host (routing through `stories`)."""
        return cls(HostGate(per_host), stories=stories or StoryIndex())


# Feed jobs in progress at once per process: enough to keep every host's slots busy, few
# enough for the database pool and memory.
POLLS_AT_ONCE = 64
# A poll may use this share of its feed's interval, so the next scheduled run always finds the
# previous one finished (APScheduler skips a run while one is still going: max_instances=1).
POLL_BUDGET_SHARE = 0.8


async def poll_feed(
    client: httpx.AsyncClient,
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    source_id: int,
    *,
    limits: feeds.FetchLimits,
    allow_private: bool,
    thresholds: Thresholds,
    now: datetime,
    model: Correction | None = None,
    index: qa.Retrieval | None = None,
    outbox: Outbox | None = None,
    full_text: bool = False,
    gates: PollGates | None = None,
) -> PollReport:
    """Fetch one feed (honouring its back-off), store and classify new entries, route alerts."""
    async with gates.polls if gates is not None else contextlib.nullcontext():
        return await _poll_feed(
            client,
            sources,
            catalog,
            subscriptions,
            ledger,
            source_id,
            limits=limits,
            allow_private=allow_private,
            thresholds=thresholds,
            now=now,
            model=model,
            index=index,
            outbox=outbox,
            full_text=full_text,
            gates=gates,
        )


async def _poll_feed(
    client: httpx.AsyncClient,
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    source_id: int,
    *,
    limits: feeds.FetchLimits,
    allow_private: bool,
    thresholds: Thresholds,
    now: datetime,
    model: Correction | None,
    index: qa.Retrieval | None,
    outbox: Outbox | None,
    full_text: bool,
    gates: PollGates | None,
) -> PollReport:
    report = PollReport()
    hosts = gates.hosts if gates is not None else None
    writes = gates.writes if gates is not None else None
    source = await sources.get(source_id)
    # A feed whose last owner gave it up is not polled, even by a job scheduled before that.
    if source is None or not source.owners:
        return report
    state = source.state
    if not state.due(now):
        return report
    loop = asyncio.get_running_loop()
    ends = loop.time() + source.interval_seconds * POLL_BUDGET_SHARE
    result = await feeds.fetch(
        client,
        state,
        limits=limits,
        allow_private=allow_private,
        now=now,
        hosts=hosts,
        deadline=ends - loop.time(),
    )
    saved = dataclasses.replace(source, state=result.state)
    report.not_modified, report.error, report.bozo = result.not_modified, result.error, result.bozo
    if result.error or result.not_modified:
        if result.error:
            metrics.METRICS.source_errors.labels("feed").inc()
            log.warning("feed %s: %s", source.name or logs.safe_url(source.url), result.error)
        async with writes if writes is not None else contextlib.nullcontext():
            await sources.save_state(saved)
        return report
    if result.bozo:
        # Kept and stored, but said: an ill-formed feed is worth a look by whoever added it.
        log.warning(
            "feed %s is ill-formed (%d entries kept): %s",
            source.name or logs.safe_url(source.url),
            len(result.articles),
            result.bozo,
        )
    entries = result.articles
    if full_text:
        entries = await with_full_text(
            client, catalog, entries, limits, allow_private, hosts=hosts, ends=ends
        )
    # Feed jobs fetch side by side but store one at a time: on SQLite, concurrent write
    # transactions that began as reads fail at once with "database is locked" (500 feeds
    # polled together lost entries that way); a store write is short next to a fetch.
    async with writes if writes is not None else contextlib.nullcontext():
        report.counts, report.changed = await store_and_classify(
            entries, catalog, thresholds=thresholds, model=model, index=index, seen_at=now
        )
        # Only now that the entries are committed may the validators move on: saved earlier,
        # a failed store would turn the next poll into a 304 and the entries would be lost.
        await sources.save_state(saved)
        await route(
            report.changed,
            sources,
            catalog,
            subscriptions,
            ledger,
            outbox,
            alert_threshold=thresholds.alert,
            now=now,
            stories=gates.stories if gates is not None else None,
        )
    return report


async def with_full_text(
    client: httpx.AsyncClient,
    catalog: Catalog,
    entries: Sequence[Article],
    limits: feeds.FetchLimits,
    allow_private: bool,
    concurrency: int = 4,
    *,
    hosts: HostGate | None = None,
    ends: float | None = None,
) -> list[Article]:
    """Replace teaser texts of entries not stored yet by the linked page's main text.

    Pages not fetched by `ends` (event-loop time) keep their teaser.
    """
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def expand(article: Article) -> Article:
        if not article.url or not feeds.is_teaser(article):
            return article
        # Pages are only fetched for entries we have not stored: a poll costs no page loads
        # for what it saw before.
        if await catalog.get_article(article.id) is not None:
            return article
        async with gate:
            left = None if ends is None else ends - loop.time()
            if left is not None and left <= 0:
                return article
            text = await feeds.full_text(
                client,
                article.url,
                limits=limits,
                allow_private=allow_private,
                hosts=hosts,
                deadline=left,
            )
        return dataclasses.replace(article, text=text) if text else article

    return list(await asyncio.gather(*(expand(article) for article in entries)))
