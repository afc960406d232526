"""The delivery ledger's sender: paced, retried, exactly-once-per-key posting of alerts and digests.

Every post owed to a chat is first written to the ledger (`Ledger.enqueue`), keyed by
(chat, kind, key) so the same alert or digest slot can never be owed twice. The Outbox claims due
rows, books each a time slot with the platform's Pacer, sends it, and records the outcome. The
guarantee is at-least-once: a row is marked sent only after the platform acknowledged it, so a
crash between the two re-sends at most the messages that were in flight. Parts of a long post
that were acknowledged are recorded, so a retry resumes after them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.chat import ChatAdapter, DeliveryError
from bot.ledger import AlertOwed, Delivery, Lease, Ledger
from bot.metrics import METRICS
from bot.models import ChatRef, DeliveryKind, Post
from bot.pacing import JITTER, PLATFORM_LIMITS, Limits, Pacer
from bot.ratelimit import MAX_REBOOKS, STALE_SLOT, SharedLimit
from bot.subscriptions import Subscriptions

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# More alerts than this for one chat in one batch are merged into one message.
MERGE_ABOVE = 3
LATENCY_MAX_MS = 2**31 - 1
# A horizon no shared slot is beyond (a reply waits for its slot, however far).
FOREVER = 1e9
# A chat whose own slot is at most this much after the platform's next one takes that slot.
READY_WITHIN = 0.001

# A message planned in a batch: when it may go, alerts first, its first row's id, rows, post.
Planned = tuple[float, int, int, list[Delivery], Post]


@dataclass(frozen=True, slots=True)
class Booked:
    """A shared slot on this process's clock: between asking and answer, the wait after each."""

    wait: float
    # The server read its clock between the two: the slot is no earlier than `earliest` (what
    # a start is judged stale against) and no later than `due` (what the sender waits for).
    earliest: float
    due: float
    # False: nothing booked; `due` is when to ask again (the chat may send) or the slot beyond
    # the horizon.
    taken: bool = True


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


class Outbox:
    """Sends what the ledger owes, paced per platform, retrying failures with back-off.

    Each pass claims a small batch (about two seconds of sending), alerts first, so an alert
    owed during a long fan-out waits for at most the rest of the current batch. A message whose
    slot is further away than that (a group's per-minute limit, a retry-after pause) goes back
    to the ledger until its slot, where later alerts for the same chat can join it. One whose
    chat may not send at the platform's next slot waits aside, and that slot goes to the next
    chat: a chat's own interval never leaves the platform's slots unused.
    """

    def __init__(
        self,
        ledger: Ledger,
        subscriptions: Subscriptions,
        adapters: Mapping[str, ChatAdapter],
        *,
        clock: Clock = lambda: datetime.now(UTC),
        sleep: Sleep = asyncio.sleep,
        limits: Mapping[str, Limits] = PLATFORM_LIMITS,
        retry: RetryPolicy = RetryPolicy(),
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        horizon_seconds: float = 2.0,
        max_backoff_seconds: float = 30.0,
        limiter: SharedLimit | None = None,
    ) -> None:
        self.ledger, self.subscriptions = ledger, subscriptions
        self.adapters, self.clock, self.sleep = adapters, clock, sleep
        # Several instances sending for one bot book their slots here too (one platform limit).
        self.limiter = limiter
        self.retry = retry
        self.lease_seconds = lease_seconds
        self.pacers = {name: Pacer(limits.get(name, a.limits)) for name, a in adapters.items()}
        self.horizon = horizon_seconds
        self.max_backoff = max_backoff_seconds
        # About `horizon` seconds of sending per pass at the platforms' combined rate.
        rate = sum(pacer.limits.per_second for pacer in self.pacers.values())
        self.batch = max(10, min(200, math.ceil(rate * horizon_seconds)))
        self._wake = asyncio.Event()
        # Cleared on an instance that does not lead (unless every instance sends, sharing the
        # limiter): what it claimed is handed back, nothing more goes out from here.
        self.sending = asyncio.Event()
        self.sending.set()
        # Chats that got a new id during the current pass; their other rows are re-claimed.
        self._moved: set[ChatRef] = set()
        self._slots = asyncio.Semaphore(concurrency)
        # Shared slots booked and not yet started: enough that a booking's round trip overlaps
        # the wait for the previous slot, few enough that a stall cannot release a burst.
        self._ahead = asyncio.Semaphore(2)
        # Held while a shared-slot send waits for its start on the platform's Pacer.
        self._starting: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.sent = 0
        self.failed = 0
        # Passes that failed (database unreachable, locked): logged, backed off, retried.
        self.errors = 0
        # Lease renewals of batches still being sent (a flood wait, a long post).
        self.renewals = 0
        # Shared slots left unused because their send would have started stale (see _send_at).
        self.rebooked = 0

    def wake(self) -> None:
        """New rows were enqueued: look at the ledger now instead of at the next due time."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, idle_seconds: float = 5.0) -> None:
        """Send due deliveries until `stop` is set; no failure ends the loop."""
        failures = 0
        while not stop.is_set():
            if not self.sending.is_set():
                await _first(self.sending.wait(), stop.wait())
                continue
            self._wake.clear()
            try:
                await self.drain_once(stop)
                due = await self._seconds_until_due(idle_seconds)
                failures = 0
            except Exception as exc:
                # A database hiccup must not end delivery for good: the rows are still there.
                failures += 1
                self.errors += 1
                due = min(self.max_backoff, 0.5 * 2.0 ** (failures - 1))
                if failures == 1:
                    log.exception("outbox pass failed; retrying in %.1f s", due)
                else:
                    log.warning(
                        "outbox pass failed again (%d in a row: %s); retrying in %.1f s",
                        failures,
                        type(exc).__name__,
                        due,
                    )
            await self._idle(stop, due)

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait `seconds` on our clock, or until woken or stopped."""
        waiters = [
            asyncio.ensure_future(self.sleep(seconds)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def drain(self, max_passes: int = 100_000) -> None:
        """Send until nothing is pending, sleeping through pacing, back-off and retry-after."""
        for _ in range(max_passes):
            if await self.drain_once():
                continue
            due = await self.ledger.next_due(list(self.adapters))
            if due is None:
                return
            await self.sleep(max(0.0, (due - self.clock()).total_seconds()))

    async def drain_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim one batch of due rows and send it; return how many rows were claimed."""
        claimed = await self.ledger.claim(
            self.clock(), limit=self.batch, lease=self.lease_seconds, platforms=list(self.adapters)
        )
        if not claimed:
            return 0
        # Held while the batch is out, however long its sends wait (flood waits, long posts).
        async with Lease(self.ledger, claimed, self.lease_seconds, self.clock) as lease:
            try:
                await self._send_batch(claimed, lease, stop)
            finally:
                self.renewals += lease.renewals
        return len(claimed)

    async def _send_batch(
        self, claimed: list[Delivery], lease: Lease, stop: asyncio.Event | None
    ) -> None:
        """Pace and send one claimed batch; every row ends recorded or handed back."""
        # Re-checked at send time: a chat that unsubscribed gets nothing it was still owed.
        gone = await self.subscriptions.inactive_chats({row.chat for row in claimed})
        if gone:
            cancelled = [row.id for row in claimed if row.chat in gone]
            await self.ledger.cancel(cancelled, "chat unsubscribed")
            lease.done(cancelled)
        by_chat: defaultdict[ChatRef, list[Delivery]] = defaultdict(list)
        for row in claimed:
            if row.chat not in gone:
                by_chat[row.chat].append(row)
        groups: list[list[Delivery]] = []
        for rows in by_chat.values():
            # A partly delivered post resumes on its own; the others may merge.
            alerts = [r for r in rows if isinstance(r.owed, AlertOwed) and not r.parts_sent]
            others = [r for r in rows if not isinstance(r.owed, AlertOwed) or r.parts_sent]
            groups += [alerts] if len(alerts) > MERGE_ABOVE else [[r] for r in alerts]
            groups += [[r] for r in others]
        # Compose before booking a slot, so the slot is spent on the send alone.
        posts = await self.ledger.compose(groups, self.clock())
        # Read before sending: after the platform acknowledged, the one write left is mark_sent.
        seen = await self.ledger.seen_at(
            [r.owed.article_id for g in groups for r in g if isinstance(r.owed, AlertOwed)]
        )
        planned: list[Planned] = []
        # Planned on one reading of the clock, a chat's later messages in this batch one chat
        # interval after its earlier ones: the order is the order their slots can be used in.
        now = self.clock().timestamp()
        chat_ready: dict[tuple[str, str], float] = {}
        for group, post in zip(groups, posts, strict=True):
            if post is None:
                for row in group:
                    await self.ledger.mark_failed(row.id, "nothing to send: article not stored")
                lease.done(row.id for row in group)
                continue
            chat = group[0].chat
            pacer = self.pacers[chat.platform]
            key = (chat.platform, chat.chat_id)
            estimate = max(pacer.slot(chat, now), chat_ready.get(key, 0.0))
            chat_ready[key] = estimate + pacer.limits.chat_interval
            # Alerts first among messages that may go at the same time (a fan-out's all may).
            rank = 0 if group[0].kind == DeliveryKind.ALERT else 1
            planned.append((estimate, rank, group[0].id, group, post))
        # One timeline: book each slot when its turn comes (so a late event loop never makes
        # up for lost time with a burst), wait for it, then let the send run alongside others.
        # A message whose chat may not send at the platform's next slot (the chat's own
        # interval) waits aside until it may; the slot goes to the next message instead of
        # being skipped while that chat waits.
        queue = deque(sorted(planned, key=lambda p: p[:3]))
        aside: list[Planned] = []  # a heap, by when the chat may send
        tasks = []
        while queue or aside:
            if aside and not queue and aside[0][0] > self.clock().timestamp():
                # Only messages whose chats may not send yet are left: back in the ledger until
                # they may, so the next batch is claimed now instead of after their wait.
                for ready, _, _, group, _ in aside:
                    await self._release(group, datetime.fromtimestamp(ready, UTC), lease)
                break
            if aside and (not queue or aside[0][0] <= self.clock().timestamp()):
                _, rank, first_id, group, post = heapq.heappop(aside)
            else:
                _, rank, first_id, group, post = queue.popleft()
            chat = group[0].chat
            stopping = stop is not None and stop.is_set()
            if stopping or not self.sending.is_set() or chat in self._moved:
                # Shutting down, no longer leading, or the chat has a new id since this batch
                # was claimed: owed as before (at the new id), no attempt charged.
                await self._release(group, None, lease)
                continue
            if self.limiter is not None:
                # The shared book is the one timeline of every instance, this one's included.
                outcome = await self._book_shared(group, post, seen, lease)
                if isinstance(outcome, asyncio.Task):
                    tasks.append(outcome)
                elif outcome is not None:
                    heapq.heappush(aside, (outcome, rank, first_id, group, post))
                continue
            pacer = self.pacers[chat.platform]
            now = self.clock().timestamp()
            slot = pacer.slot(chat, now)
            if slot - now > self.horizon:
                # Don't hold the batch for it; back in the ledger until its slot.
                await self._release(group, datetime.fromtimestamp(slot, UTC), lease)
                continue
            if pacer.chat_delay(chat, now) > READY_WITHIN:
                heapq.heappush(aside, (slot, rank, first_id, group, post))
                continue
            at_ts = pacer.book(chat, now)
            wait = at_ts - self.clock().timestamp()
            if wait > 0:
                await self.sleep(wait)
                if chat in self._moved:
                    await self._release(group, None, lease)
                    continue
            await self._slots.acquire()
            began = asyncio.Event()
            tasks.append(asyncio.create_task(self._send_released(group, post, seen, began, lease)))
            await began.wait()
            pacer.started(chat, self.clock().timestamp(), at_ts)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self._moved.clear()
        for result in results:
            if isinstance(result, BaseException):
                # Rows whose outcome could not be recorded are sent again after their lease.
                raise result

    async def _release(
        self, rows: list[Delivery], not_before: datetime | None, lease: Lease
    ) -> None:
        await self.ledger.release([r.id for r in rows], not_before)
        lease.done(r.id for r in rows)

    async def _book_shared(
        self, rows: list[Delivery], post: Post, seen: Mapping[str, datetime], lease: Lease
    ) -> asyncio.Task[None] | float | None:
        """Book the rows' slot in the shared limiter; a task that sends at it.

        Not booked: the time (this process's clock) to ask again, when the chat may send, or
        None when the rows went back to the ledger (their slot beyond the horizon).
        A send slot (of `concurrency`) is taken before booking, so at most that many slots are
        booked ahead of their sends: the booking's round trip overlaps the wait for the slot
        instead of adding to it."""
        assert self.limiter is not None
        chat = rows[0].chat
        await self._slots.acquire()
        await self._ahead.acquire()
        try:
            booked = await self._book_slot(chat)
        except BaseException:
            self._ahead.release()
            self._slots.release()
            raise
        if not booked.taken:
            self._ahead.release()
            self._slots.release()
            if booked.wait <= self.horizon:
                return booked.due  # the chat's own interval: ask again when it may send
            # Other senders took the nearer slots: back in the ledger until this one's.
            later = self.clock() + timedelta(seconds=booked.wait)
            await self._release(rows, later, lease)
            return None
        return asyncio.create_task(self._send_at(rows, post, seen, booked, lease))

    async def _book_slot(self, chat: ChatRef) -> Booked:
        assert self.limiter is not None
        asked = self.clock().timestamp()
        slot = await self.limiter.book(chat, self.pacers[chat.platform].limits, self.horizon)
        return Booked(
            slot.wait, asked + slot.wait, self.clock().timestamp() + slot.wait, slot.booked
        )

    async def _rebook(self, rows: list[Delivery], lease: Lease) -> Booked | None:
        """A fresh shared slot for rows whose slot went stale (None: handed back to the ledger)."""
        try:
            while not (booked := await self._book_slot(rows[0].chat)).taken:
                if booked.wait > self.horizon:
                    break
                # The stale slot still holds the chat's own interval: the chat may send again
                # once it has passed (the platform's slots meanwhile go to other chats).
                await self.sleep(booked.wait)
        except Exception:
            # Neither sent nor booked: owed again now rather than one lease later.
            await self._release(rows, None, lease)
            raise
        if not booked.taken:
            later = self.clock() + timedelta(seconds=booked.wait)
            await self._release(rows, later, lease)
            return None
        return booked

    async def _send_at(
        self,
        rows: list[Delivery],
        post: Post,
        seen: Mapping[str, datetime],
        booked: Booked,
        lease: Lease,
    ) -> None:
        """Send within STALE_SLOT of a booked slot (re-booked when woken later); push if late."""
        assert self.limiter is not None
        chat = rows[0].chat
        pacer = self.pacers[chat.platform]
        ahead = True
        try:
            for rebooks in itertools.count():
                wait = booked.due - self.clock().timestamp()
                if wait > 0:
                    await self.sleep(wait)
                if ahead:
                    self._ahead.release()
                    ahead = False
                # `due` is only as good as the clock it was read on: the answer's trip back and
                # a busy event loop delay it by amounts that differ from send to send, and sends
                # woken late wake together, so they would reach the platform closer than it
                # allows. This instance's sends therefore also start one at a time on its Pacer
                # (platform and chat spacing), each booked at the moment it really starts.
                async with self._starting[chat.platform]:
                    # (A millisecond early is nothing to the rates' headroom, and no clock's
                    # rounding keeps this waiting for ever.)
                    while (at := pacer.slot(chat, now := self.clock().timestamp())) > now + 0.001:
                        await self.sleep(at - now)
                    stale = now - booked.earliest > STALE_SLOT and rebooks < MAX_REBOOKS
                    if not stale:
                        pacer.book(chat, now)
                if chat in self._moved:
                    await self._release(rows, None, lease)
                    return
                if not stale:
                    break
                # Stalled past its slot (a starved process): sent now it would join a window
                # the other instances' on-time sends already fill. The slot goes unused, which
                # is always safe, and the send waits for a fresh one (its rows stay leased).
                self.rebooked += 1
                log.debug(
                    "delivery %d: slot %.0f ms stale; booking a fresh one",
                    rows[0].id,
                    (now - booked.earliest) * 1000,
                    extra=fields(rows[0]),
                )
                fresh = await self._rebook(rows, lease)
                if fresh is None:
                    return
                booked = fresh
            if self.clock().timestamp() - booked.due > JITTER:
                # Woken (or spaced) late: the shared book's next slots keep their distance from
                # this send (booked alongside it, so the send itself is not delayed further).
                pushing = asyncio.create_task(self._push_late(chat))
                try:
                    await self._send(rows, post, seen)
                finally:
                    await pushing
            else:
                await self._send(rows, post, seen)
            lease.done(r.id for r in rows)
        finally:
            if ahead:
                self._ahead.release()
            self._slots.release()

    async def _push_late(self, chat: ChatRef) -> None:
        assert self.limiter is not None
        try:
            await self.limiter.late(chat, self.pacers[chat.platform].limits)
        except Exception as exc:  # the send goes on; the headroom in the shared rate covers it
            log.warning("shared rate limit unreachable (%s)", type(exc).__name__)

    async def reserve(self, chat: ChatRef) -> None:
        """Wait for a send slot to `chat` outside the ledger (a reply) and book it everywhere."""
        if chat.platform not in self.pacers:
            return
        pacer = self.pacers[chat.platform]
        if self.limiter is not None:
            # A reply cannot wait in the ledger: it takes the next shared slot, however far
            # (asking again once the chat may send, if it may not at the platform's next).
            while True:
                shared = await self.limiter.book(chat, pacer.limits, FOREVER)
                if shared.wait > 0:
                    await self.sleep(shared.wait)
                if shared.booked:
                    break
        at = pacer.book(chat, self.clock().timestamp())
        wait = at - self.clock().timestamp()
        if wait > 0:
            await self.sleep(wait)
        pacer.started(chat, self.clock().timestamp(), at)

    async def _seconds_until_due(self, idle: float) -> float:
        due = await self.ledger.next_due(list(self.adapters))
        if due is None:
            return idle
        return max(0.0, min(idle, (due - self.clock()).total_seconds()))

    async def _send_released(
        self,
        rows: list[Delivery],
        post: Post,
        seen: Mapping[str, datetime],
        began: asyncio.Event,
        lease: Lease,
    ) -> None:
        began.set()
        try:
            await self._send(rows, post, seen)
            lease.done(r.id for r in rows)
        finally:
            self._slots.release()

    async def _send(self, rows: list[Delivery], post: Post, seen: Mapping[str, datetime]) -> None:
        first = rows[0]
        adapter = self.adapters[first.chat.platform]
        resume = first.parts_sent if len(rows) == 1 else 0
        try:
            # Only a resumed post passes skip_parts, so adapters without resume still work.
            if resume:
                sent = await adapter.send(first.chat, post, skip_parts=resume)
            else:
                sent = await adapter.send(first.chat, post)
        except DeliveryError as exc:
            await self._failed(rows, exc)
            return
        except Exception as exc:  # network errors, timeouts, adapter bugs: retry via the ledger
            for row in rows:
                log.warning(
                    "delivery %d to %s failed: %s",
                    row.id,
                    row.chat.platform,
                    type(exc).__name__,
                    extra=fields(row),
                )
            await self._failed(rows, DeliveryError(f"{type(exc).__name__}: {exc}"))
            return
        now = self.clock()
        message_ids = (first.message_ids if resume else ()) + sent.message_ids
        for row in rows:
            latency = None
            if isinstance(row.owed, AlertOwed) and row.owed.article_id in seen:
                appeared = seen[row.owed.article_id]
                # The column is 32-bit: a story alerted weeks late (or clock skew) must not make
                # the write fail on PostgreSQL, which would re-send the alert after every lease.
                latency = min(LATENCY_MAX_MS, max(0, int((now - appeared).total_seconds() * 1000)))
            await self._mark_sent(row.id, now, message_ids, latency)
            log.info(
                "delivery %d sent (%s to %s)",
                row.id,
                row.kind,
                row.chat.platform,
                extra=fields(row) | {"latency_ms": latency},
            )
            METRICS.deliveries.labels(first.chat.platform, row.kind, "sent").inc()
            if latency is not None:
                METRICS.alert_latency.labels(first.chat.platform).observe(latency / 1000)
        self.sent += len(rows)

    async def _mark_sent(
        self, delivery_id: int, at: datetime, message_ids: Sequence[str], latency: int | None
    ) -> None:
        """Record an acknowledged send, retrying while the database is away (within the lease)."""
        # The platform has the message: giving up here would send it again after the lease.
        waited, delay = 0.0, 0.5
        while True:
            try:
                await self.ledger.mark_sent(delivery_id, at, message_ids, latency)
                return
            except Exception as exc:
                self.errors += 1
                if waited + delay > self.lease_seconds / 2:
                    raise
                log.warning(
                    "recording delivery %d as sent failed (%s); retrying in %.1f s",
                    delivery_id,
                    type(exc).__name__,
                    delay,
                    extra={"delivery_id": delivery_id},
                )
                await self.sleep(delay)
                waited += delay
                delay = min(self.max_backoff, delay * 2)

    async def _failed(self, rows: list[Delivery], exc: DeliveryError) -> None:
        chat = rows[0].chat
        now = self.clock()
        reason = str(exc)
        parts: tuple[int, tuple[str, ...]] | None = None
        if len(rows) == 1 and exc.delivered_parts:
            row = rows[0]
            parts = (row.parts_sent + exc.delivered_parts, row.message_ids + exc.message_ids)
        if exc.unavailable:
            # Our side is not connected (starting or stopping): not the message's fault.
            later = now + timedelta(seconds=self.retry.base_seconds)
            for row in rows:
                await self.ledger.mark_retry(row.id, reason, later, count=False, parts=parts)
            return
        if exc.migrated_to:
            for row in rows:
                log.info(
                    "delivery %d: %s chat moved to a new id; re-sending there",
                    row.id,
                    chat.platform,
                    extra=fields(row),
                )
            await self.subscriptions.migrate_chat(chat, exc.migrated_to)
            self._moved.add(chat)
            for row in rows:
                # The new chat has seen none of it: send it whole.
                await self.ledger.mark_retry(row.id, reason, now, count=False, parts=(0, ()))
            return
        if exc.chat_gone:
            for row in rows:
                log.info(
                    "delivery %d: %s chat is gone (%s); subscription deactivated",
                    row.id,
                    chat.platform,
                    reason,
                    extra=fields(row),
                )
            await self.subscriptions.deactivate(chat)
            self.failed += len(rows)
            for row in rows:
                METRICS.deliveries.labels(chat.platform, row.kind, "failed").inc()
            return
        if exc.retry_after is not None:
            # The platform's own word on when to come back: pause the whole platform, not only
            # this chat, and don't count it as a failed attempt.
            METRICS.rate_limited.labels(chat.platform).inc()
            self.pacers[chat.platform].pause(now.timestamp() + exc.retry_after)
            if self.limiter is not None:
                await self.limiter.pause(chat.platform, exc.retry_after)
            later = now + timedelta(seconds=exc.retry_after)
            for row in rows:
                log.info(
                    "delivery %d: %s asked to retry after %.0f s",
                    row.id,
                    chat.platform,
                    exc.retry_after,
                    extra=fields(row),
                )
                await self.ledger.mark_retry(row.id, reason, later, count=False, parts=parts)
            return
        for row in rows:
            if exc.permanent or row.attempts + 1 >= self.retry.max_attempts:
                log.warning("giving up on delivery %d: %s", row.id, reason, extra=fields(row))
                await self.ledger.mark_failed(row.id, reason)
                self.failed += 1
                METRICS.deliveries.labels(chat.platform, row.kind, "failed").inc()
            else:
                later = now + timedelta(seconds=self.retry.delay(row.attempts + 1))
                await self.ledger.mark_retry(row.id, reason, later, parts=parts)
                METRICS.deliveries.labels(chat.platform, row.kind, "retry").inc()


def fields(row: Delivery) -> dict[str, object]:
    """The structured fields of a delivery's log lines (JSON logs carry them as keys)."""
    return {
        "delivery_id": row.id,
        "platform": row.chat.platform,
        "chat": row.chat.chat_id,
        "kind": row.kind,
    }


async def _first(*waits: Awaitable[object]) -> None:
    """Wait until the first of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
