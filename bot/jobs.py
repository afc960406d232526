"""Units of work for the scheduler and the CLI: ingest, poll feeds, route alerts, digests, prune."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bot import articles, cluster, feeds, qa, schedule
from bot.classify import classify
from bot.learn import FeedbackModel
from bot.models import Article, ChatRef, Preferences, Thresholds, Verdict
from bot.outbox import Outbox
from bot.store import IngestCounts, Store

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
    batch: Sequence[Article], thresholds: Thresholds, model: FeedbackModel | None = None
) -> list[Verdict]:
    """Verdicts for a batch, in order."""
    return [classify(article, thresholds, model) for article in batch]


async def ingest(
    paths: Sequence[Path],
    store: Store,
    *,
    thresholds: Thresholds,
    max_bytes: int = 5_000_000,
    languages: Sequence[str] = ("de", "en"),
    model: FeedbackModel | None = None,
    index: qa.Index | None = None,
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
        found, store, thresholds=thresholds, model=model, index=index
    )
    return report


async def store_and_classify(
    found: Sequence[Article],
    store: Store,
    *,
    thresholds: Thresholds,
    model: FeedbackModel | None = None,
    index: qa.Index | None = None,
    seen_at: datetime | None = None,
) -> tuple[IngestCounts, list[tuple[Article, Verdict]]]:
    """Store articles; classify the new and changed ones and add them to the QA index."""
    counts, changed = await store.add_articles(found, seen_at=seen_at)
    if not changed:
        return counts, []
    # Classification is CPU work: keep the event loop free for chats meanwhile.
    verdicts = await asyncio.to_thread(classify_all, changed, thresholds, model)
    await store.save_verdicts(verdicts)
    classified = list(zip(changed, verdicts, strict=True))
    if index is not None:
        for article, verdict in classified:
            index.add(article, verdict.score)
    return counts, classified


def wants(prefs: Preferences, article: Article, verdict: Verdict) -> bool:
    """Whether an article passes a chat's filters (countries, include and exclude words)."""
    haystack = f"{article.title}\n{article.text}".casefold()
    if prefs.exclude and any(word.casefold() in haystack for word in prefs.exclude):
        return False
    if prefs.include and not any(word.casefold() in haystack for word in prefs.include):
        return False
    if prefs.countries:
        topics = {t.casefold() for t in verdict.topics}
        return any(c.casefold() in topics or c.casefold() in haystack for c in prefs.countries)
    return True


async def route(
    changed: Sequence[tuple[Article, Verdict]],
    store: Store,
    outbox: Outbox | None,
    *,
    alert_threshold: float,
    now: datetime,
    story_window: timedelta = timedelta(days=3),
) -> int:
    """Cluster new articles into stories; owe each subscriber one alert per alert-worthy story."""
    if not changed:
        return 0
    known = await store.recent(now - story_window)
    # Comparing event signatures is CPU work: keep the event loop free for chats meanwhile.
    stories = await asyncio.to_thread(cluster.assign, [article for article, _ in changed], known)
    await store.set_stories(stories)
    subscriptions = await store.subscriptions()
    wanted: list[tuple[ChatRef, str, str, dict[str, Any], datetime | None]] = []
    for article, verdict in changed:
        for subscription in subscriptions:
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
                    "alert",
                    stories[article.id],
                    {"article_id": article.id, "lang": subscription.lang},
                    schedule.quiet_until(prefs, now),
                )
            )
    owed = await store.enqueue_many(wanted)
    if owed and outbox is not None:
        outbox.wake()
    return owed


async def digest_due(
    store: Store,
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
    subscription = await store.subscription_by_id(subscription_id)
    if subscription is None or not subscription.active:
        return False
    slot = schedule.last_slot(subscription.prefs, now)
    if slot is None or now - slot > grace or slot <= subscription.created_at:
        return False
    if subscription.last_digest_at is not None and subscription.last_digest_at >= slot:
        return False
    since = subscription.last_digest_at or subscription.created_at
    flagged = await store.flagged(digest_threshold, since=since, limit=max_items * 5)
    firsts = await store.story_ids([article.id for article, _, _ in flagged])
    chosen = [
        article.id
        for article, verdict, _ in flagged
        # Later reports of a story appear as "also reported by" under the first one.
        if firsts.get(article.id, article.id) == article.id
        and wants(subscription.prefs, article, verdict)
    ][:max_items]
    owed = False
    if chosen or empty_message:
        owed = await store.enqueue(
            subscription.chat,
            "digest" if chosen else "notice",
            slot.isoformat(),
            {
                "article_ids": chosen,
                "since": since.isoformat(),
                "lang": subscription.lang,
                "text": "No new conflict-related articles."
                if subscription.lang != "de"
                else "Keine neuen konfliktbezogenen Artikel.",
            },
        )
    await store.mark_digest(subscription.id, slot)
    if owed and outbox is not None:
        outbox.wake()
    return owed


async def prune(store: Store, *, retention: timedelta, now: datetime) -> None:
    """Delete articles and finished deliveries older than the retention period."""
    articles_gone, deliveries_gone = await store.prune(now - retention)
    if articles_gone or deliveries_gone:
        log.info("pruned %d articles and %d deliveries", articles_gone, deliveries_gone)


async def poll_feed(
    client: httpx.AsyncClient,
    store: Store,
    source_id: int,
    *,
    limits: feeds.FetchLimits,
    allow_private: bool,
    thresholds: Thresholds,
    now: datetime,
    model: FeedbackModel | None = None,
    index: qa.Index | None = None,
    outbox: Outbox | None = None,
    full_text: bool = False,
) -> IngestReport:
    """Fetch one feed (honouring its back-off), store and classify new entries, route alerts."""
    report = IngestReport()
    source = await store.source(source_id)
    if source is None:
        return report
    state = feeds.FeedState(
        url=source.url,
        etag=source.etag,
        last_modified=source.last_modified,
        failures=source.failures,
        last_error=source.last_error,
        next_attempt=source.next_attempt_at,
        last_fetched=source.last_fetched_at,
    )
    if not state.due(now):
        return report
    result = await feeds.fetch(client, state, limits=limits, allow_private=allow_private, now=now)
    new = result.state
    await store.save_source_state(
        dataclasses.replace(
            source,
            etag=new.etag,
            last_modified=new.last_modified,
            failures=new.failures,
            last_error=new.last_error,
            next_attempt_at=new.next_attempt,
            last_fetched_at=new.last_fetched,
        )
    )
    if result.error:
        log.warning("feed %s: %s", source.name or source.url, result.error)
        return report
    entries = result.articles
    if full_text:
        entries = await with_full_text(client, store, entries, limits, allow_private)
    report.counts, report.changed = await store_and_classify(
        entries, store, thresholds=thresholds, model=model, index=index, seen_at=now
    )
    await route(report.changed, store, outbox, alert_threshold=thresholds.alert, now=now)
    return report


async def with_full_text(
    client: httpx.AsyncClient,
    store: Store,
    entries: Sequence[Article],
    limits: feeds.FetchLimits,
    allow_private: bool,
    concurrency: int = 4,
) -> list[Article]:
    """Replace teaser texts of entries not stored yet by the linked page's main text."""
    gate = asyncio.Semaphore(concurrency)

    async def expand(article: Article) -> Article:
        if not article.url or not feeds.is_teaser(article):
            return article
        # Pages are only fetched for entries we have not stored: a poll costs no page loads
        # for what it saw before.
        if await store.get_article(article.id) is not None:
            return article
        async with gate:
            text = await feeds.full_text(
                client, article.url, limits=limits, allow_private=allow_private
            )
        return dataclasses.replace(article, text=text) if text else article

    return list(await asyncio.gather(*(expand(article) for article in entries)))
