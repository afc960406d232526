"""The delivery ledger's sender: paced, retried, exactly-once-per-key posting of alerts and digests.

Every post owed to a chat is first written to the `deliveries` table (Store.enqueue), keyed by
(chat, kind, key) so the same alert or digest slot can never be owed twice. The Outbox claims due
rows, books each a time slot with the platform's Pacer, sends it, and records the outcome. The
guarantee is at-least-once: a row is marked sent only after the platform acknowledged it, so a
crash between the two re-sends at most the messages that were in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot import digest
from bot.chat import ChatAdapter, DeliveryError
from bot.models import Alert, Article, Digest, Notice, Post
from bot.pacing import PLATFORM_LIMITS, Limits, Pacer
from bot.store import Delivery, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# More alerts than this for one chat in one batch are merged into one message.
MERGE_ABOVE = 3


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed sends are retried."""

    max_attempts: int = 8
    base_seconds: float = 5.0
    cap_seconds: float = 3600.0

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Exponential back-off with jitter after `attempts` failed tries."""
        raw = min(self.cap_seconds, self.base_seconds * 2.0 ** max(0, attempts - 1))
        return float(raw * (0.8 + 0.2 * rand()))


async def compose(store: Store, delivery: Delivery) -> Post | None:
    """The post a ledger row stands for, rebuilt from the store (None: its articles are gone)."""
    payload = delivery.payload
    lang = str(payload.get("lang", "en"))
    if delivery.kind == "alert":
        entries = await store.entries([str(payload["article_id"])])
        if not entries:
            return None
        article, verdict = entries[0]
        item = digest.item(article, verdict)
        return Alert(item, lang=lang)
    if delivery.kind == "digest":
        ids = [str(i) for i in payload.get("article_ids", [])]
        entries = await store.entries(ids)
        since = payload.get("since")
        built = digest.build(
            entries,
            now=delivery.created_at,
            since=datetime.fromisoformat(since) if since else None,
            max_items=len(ids) or 1,
            lang=lang,
        )
        reports = await store.also_reported([a.id for a, _ in entries])
        return with_also_reported(built, reports)
    if delivery.kind == "notice":
        return Notice(str(payload.get("text", "")))
    log.warning("delivery %d has unknown kind %r; skipped", delivery.id, delivery.kind)
    return None


def with_also_reported(built: Digest, reports: Mapping[str, list[Article]]) -> Digest:
    """Name the other sources of each story under its item."""
    items = []
    for entry in built.items:
        others = reports.get(entry.article_id, [])
        names = tuple(dict.fromkeys((a.agency or a.source or a.id) for a in others))
        items.append(replace(entry, also_reported_by=names) if names else entry)
    return replace(built, items=tuple(items))


class Outbox:
    """Sends what the ledger owes, paced per platform, retrying failures with back-off."""

    def __init__(
        self,
        store: Store,
        adapters: Mapping[str, ChatAdapter],
        *,
        clock: Clock = lambda: datetime.now(UTC),
        sleep: Sleep = asyncio.sleep,
        limits: Mapping[str, Limits] = PLATFORM_LIMITS,
        retry: RetryPolicy = RetryPolicy(),
        concurrency: int = 8,
        lease_seconds: float = 60.0,
    ) -> None:
        self.store, self.adapters, self.clock, self.sleep = store, adapters, clock, sleep
        self.retry = retry
        self.lease_seconds = lease_seconds
        self.pacers = {name: Pacer(limits.get(name, a.limits)) for name, a in adapters.items()}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        """New rows were enqueued: look at the ledger now instead of at the next due time."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, idle_seconds: float = 5.0) -> None:
        """Send due deliveries until `stop` is set."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.drain_once()
            except Exception:
                # A database hiccup must not end delivery for good; the rows are still there.
                log.exception("outbox pass failed; retrying shortly")
            due = await self._seconds_until_due(idle_seconds)
            waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=due, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def drain(self, max_passes: int = 1000) -> None:
        """Send until nothing is pending, sleeping through pacing, back-off and retry-after."""
        for _ in range(max_passes):
            if await self.drain_once():
                continue
            due = await self.store.next_due(list(self.adapters))
            if due is None:
                return
            await self.sleep(max(0.0, (due - self.clock()).total_seconds()))

    async def drain_once(self) -> int:
        """Claim one batch of due rows and send it; return how many rows were claimed."""
        claimed = await self.store.claim(
            self.clock(), limit=200, lease=self.lease_seconds, platforms=list(self.adapters)
        )
        if not claimed:
            return 0
        by_chat: defaultdict[tuple[str, str, str | None], list[Delivery]] = defaultdict(list)
        for row in claimed:
            by_chat[(row.chat.platform, row.chat.chat_id, row.chat.thread_id)].append(row)
        planned: list[tuple[float, int, list[Delivery], Post]] = []
        # A fan-out owes many chats the same post: compose each distinct payload once.
        composed: dict[str, Post | None] = {}
        for rows in by_chat.values():
            alerts = [r for r in rows if r.kind == "alert"]
            others = [r for r in rows if r.kind != "alert"]
            groups = [alerts] if len(alerts) > MERGE_ABOVE else [[r] for r in alerts]
            groups += [[r] for r in others]
            for group in groups:
                # Compose before booking a slot, so the slot is spent on the send alone.
                post = await self._post(group, composed)
                if post is None:
                    for row in group:
                        await self.store.mark_failed(row.id, "nothing to send: article not stored")
                    continue
                pacer = self.pacers[group[0].chat.platform]
                estimate = pacer.slot(group[0].chat, self.clock().timestamp())
                planned.append((estimate, group[0].id, group, post))
        # One timeline: book each slot when its turn comes (so a late event loop never makes
        # up for lost time with a burst), wait for it, then let the send run alongside others.
        tasks = []
        for _, _, group, post in sorted(planned, key=lambda p: (p[0], p[1])):
            pacer = self.pacers[group[0].chat.platform]
            at = pacer.book(group[0].chat, self.clock().timestamp())
            wait = at - self.clock().timestamp()
            if wait > 0:
                await self.sleep(wait)
            await self._slots.acquire()
            began = asyncio.Event()
            tasks.append(asyncio.create_task(self._send_released(group, post, began)))
            await began.wait()
            pacer.started(group[0].chat, self.clock().timestamp(), at)
        await asyncio.gather(*tasks)
        return len(claimed)

    async def _seconds_until_due(self, idle: float) -> float:
        due = await self.store.next_due(list(self.adapters))
        if due is None:
            return idle
        return max(0.0, min(idle, (due - self.clock()).total_seconds()))

    async def _send_released(self, rows: list[Delivery], post: Post, began: asyncio.Event) -> None:
        began.set()
        try:
            await self._send(rows, post)
        finally:
            self._slots.release()

    async def _send(self, rows: list[Delivery], post: Post) -> None:
        first = rows[0]
        adapter = self.adapters[first.chat.platform]
        try:
            sent = await adapter.send(first.chat, post)
        except DeliveryError as exc:
            await self._failed(rows, exc)
            return
        except Exception as exc:  # network errors, timeouts, adapter bugs: retry via the ledger
            log.warning("send to %s failed: %s", first.chat.platform, type(exc).__name__)
            await self._failed(rows, DeliveryError(f"{type(exc).__name__}: {exc}"))
            return
        now = self.clock()
        seen = await self.store.seen_at(
            [str(r.payload["article_id"]) for r in rows if r.kind == "alert"]
        )
        for row in rows:
            latency = None
            if row.kind == "alert" and str(row.payload["article_id"]) in seen:
                appeared = seen[str(row.payload["article_id"])]
                latency = int((now - appeared).total_seconds() * 1000)
            await self.store.mark_sent(row.id, now, sent.message_ids, latency)
        self.sent += len(rows)

    async def _post(self, rows: list[Delivery], composed: dict[str, Post | None]) -> Post | None:
        if len(rows) == 1:
            row = rows[0]
            key = f"{row.kind}:{json.dumps(row.payload, sort_keys=True)}"
            if key not in composed:
                composed[key] = await compose(self.store, row)
            return composed[key]
        # A burst of alerts for one chat goes out as one message rather than a stream of them.
        items = []
        for row in rows:
            post = await self._post([row], composed)
            if isinstance(post, Alert):
                items.append(post.item)
        if not items:
            return None
        lang = str(rows[0].payload.get("lang", "en"))
        return Digest(items=tuple(items), generated_at=self.clock(), lang=lang)

    async def _failed(self, rows: list[Delivery], exc: DeliveryError) -> None:
        chat = rows[0].chat
        now = self.clock()
        reason = str(exc)
        if exc.migrated_to:
            log.info("%s chat moved to a new id; re-sending there", chat.platform)
            await self.store.migrate_chat(chat, exc.migrated_to)
            for row in rows:
                await self.store.mark_retry(row.id, reason, now, count=False)
            return
        if exc.chat_gone:
            log.info("%s chat is gone (%s); subscription deactivated", chat.platform, reason)
            await self.store.deactivate(chat)
            self.failed += len(rows)
            return
        if exc.retry_after is not None:
            # The platform's own word on when to come back: pause the whole platform, not only
            # this chat, and don't count it as a failed attempt.
            self.pacers[chat.platform].pause(now.timestamp() + exc.retry_after)
            later = now + timedelta(seconds=exc.retry_after)
            for row in rows:
                await self.store.mark_retry(row.id, reason, later, count=False)
            return
        for row in rows:
            if exc.permanent or row.attempts + 1 >= self.retry.max_attempts:
                log.warning("giving up on delivery %d: %s", row.id, reason)
                await self.store.mark_failed(row.id, reason)
                self.failed += 1
            else:
                later = now + timedelta(seconds=self.retry.delay(row.attempts + 1))
                await self.store.mark_retry(row.id, reason, later)
