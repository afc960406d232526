"""The delivery ledger: every post owed to a chat, claimed under a lease, and its outcome.

Every post owed to a chat is first written to the `deliveries` table (`enqueue`), keyed by
(chat, kind, key) so the same alert or digest slot can never be owed twice. A sender claims due
rows under a lease; a crashed sender's rows are claimed again after it runs out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import digest
from bot.db import aware, insert_ignore, utcnow
from bot.models import (
    FINISHED,
    OWED,
    Alert,
    Article,
    ChatRef,
    DeliveryKind,
    DeliveryStatus,
    Digest,
    Notice,
    Post,
    Verdict,
)
from bot.schema import deliveries, verdicts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlertOwed:
    """An alert about one article, in the chat's language."""

    article_id: str
    lang: str = "en"
    kind: ClassVar[DeliveryKind] = DeliveryKind.ALERT


@dataclass(frozen=True, slots=True)
class DigestOwed:
    """A digest of these articles (first reports of their stories), flagged since `since`."""

    article_ids: tuple[str, ...]
    since: datetime | None = None
    lang: str = "en"
    kind: ClassVar[DeliveryKind] = DeliveryKind.DIGEST


@dataclass(frozen=True, slots=True)
class NoticeOwed:
    """A plain text message (a digest slot with nothing to report)."""

    text: str
    lang: str = "en"
    kind: ClassVar[DeliveryKind] = DeliveryKind.NOTICE


Owed = AlertOwed | DigestOwed | NoticeOwed


def encode(owed: Owed) -> str:
    """The `payload` column of a row owing `owed`."""
    data: dict[str, object]
    match owed:
        case AlertOwed():
            data = {"article_id": owed.article_id, "lang": owed.lang}
        case DigestOwed():
            since = owed.since.isoformat() if owed.since else None
            data = {"article_ids": list(owed.article_ids), "since": since, "lang": owed.lang}
        case NoticeOwed():
            data = {"text": owed.text, "lang": owed.lang}
    return json.dumps(data, ensure_ascii=False)


def decode(kind: str, payload: str | None) -> Owed | None:
    """What a row owes, from its kind and payload; None for a kind or payload we can't read."""
    # Rows written by any earlier version read the same: the payload keys never changed.
    try:
        data = json.loads(payload or "{}")
        if not isinstance(data, dict):
            return None
        lang = str(data.get("lang") or "en")
        if kind == DeliveryKind.ALERT:
            return AlertOwed(str(data["article_id"]), lang)
        if kind == DeliveryKind.DIGEST:
            since = data.get("since")
            return DigestOwed(
                tuple(str(i) for i in data.get("article_ids") or ()),
                datetime.fromisoformat(since) if since else None,
                lang,
            )
        if kind == DeliveryKind.NOTICE:
            return NoticeOwed(str(data.get("text", "")), lang)
    except (ValueError, KeyError, TypeError):
        pass
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the ledger: a post owed to one chat."""

    id: int
    chat: ChatRef
    # As stored: a newer version's kind stays readable here, with `owed` None.
    kind: str
    key: str
    owed: Owed | None
    attempts: int
    created_at: datetime
    # Parts of a multi-part post already acknowledged, and their message ids.
    parts_sent: int = 0
    message_ids: tuple[str, ...] = ()


class Articles(Protocol):
    """What composing posts reads of the stored articles (bot.catalog's Catalog is it)."""

    async def entries(self, article_ids: Sequence[str]) -> list[tuple[Article, Verdict]]:
        """Articles with their verdicts, in the order of `article_ids` (missing ones left out)."""
        ...

    async def also_reported(self, story_ids: Sequence[str]) -> dict[str, list[Article]]:
        """Other articles of each story (the later reports), oldest first."""
        ...

    async def seen_at(self, article_ids: Sequence[str]) -> dict[str, datetime]:
        """When each article first appeared."""
        ...


class Ledger:
    """The outbox's rows: owe, claim under a lease, and record what became of each send."""

    def __init__(self, engine: AsyncEngine, catalog: Articles) -> None:
        # The catalog holds the articles a row refers to: composing a post reads them.
        self.engine, self.catalog = engine, catalog

    async def enqueue_many(
        self,
        owed: Sequence[tuple[ChatRef, str, Owed, datetime | None]],
        routed: Sequence[str] = (),
    ) -> int:
        """Owe several posts at once (chat, key, what, not_before); return how many are new.

        `routed`: articles whose verdicts are marked routed in the same transaction, so they are
        either owed to their chats and marked, or neither (and the routing sweep owes them).
        """
        if not owed and not routed:
            return 0
        rows = [
            {
                "platform": chat.platform,
                "chat_id": chat.chat_id,
                "thread_id": chat.thread_id or "",
                "kind": what.kind.value,
                "key": key,
                "status": DeliveryStatus.PENDING.value,
                "payload": encode(what),
                "created_at": utcnow(),
                "next_attempt_at": not_before,
            }
            for chat, key, what, not_before in owed
        ]
        inserted = 0
        async with self.engine.begin() as conn:
            # RETURNING counts exactly the rows this call added, whatever other instances do.
            statement = insert_ignore(conn, deliveries).returning(deliveries.c.id)
            for start in range(0, len(rows), 500):
                result = await conn.execute(statement, rows[start : start + 500])
                inserted += len(result.all())
            ids = list(routed)
            for start in range(0, len(ids), 500):
                await conn.execute(
                    verdicts.update()
                    .where(verdicts.c.article_id.in_(ids[start : start + 500]))
                    .values(routed=True)
                )
        return inserted

    async def enqueue(
        self, chat: ChatRef, key: str, owed: Owed, not_before: datetime | None = None
    ) -> bool:
        """Owe `chat` a post, once: False when the same (chat, kind, key) was owed before."""
        return await self.enqueue_many([(chat, key, owed, not_before)]) == 1

    async def claim(
        self,
        now: datetime,
        limit: int = 100,
        lease: float = 60.0,
        platforms: Sequence[str] | None = None,
    ) -> list[Delivery]:
        """Take due deliveries for sending: pending ones, and ones whose sender's lease ran out.

        Alerts first, then by id: an alert owed during a big digest overtakes its remaining rows.
        """
        due = sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now)
        pending = deliveries.c.status == DeliveryStatus.PENDING
        # Three index walks that each stop after `limit` rows, instead of ordering the whole
        # backlog by "alert first" for every claim: the first `limit` of their union are the
        # first `limit` of all due rows.
        parts = [
            sa.select(deliveries)
            .where(pending, deliveries.c.kind == DeliveryKind.ALERT, due)
            .order_by(deliveries.c.id),
            sa.select(deliveries).where(pending, due).order_by(deliveries.c.id),
            # Lapsed leases are few (a sender died): ordered as a whole, alerts first.
            sa.select(deliveries)
            .where(deliveries.c.status == DeliveryStatus.SENDING, deliveries.c.lease_until < now)
            .order_by(
                sa.case((deliveries.c.kind == DeliveryKind.ALERT, 0), else_=1), deliveries.c.id
            ),
        ]
        async with self.engine.begin() as conn:
            found: dict[int, Delivery] = {}
            for query in parts:
                if platforms is not None:
                    query = query.where(deliveries.c.platform.in_(list(platforms)))
                query = query.limit(limit)
                if conn.dialect.name == "postgresql":
                    # Several instances share the outbox: each row goes to exactly one of them.
                    query = query.with_for_update(skip_locked=True)
                for r in await conn.execute(query):
                    found.setdefault(r.id, _delivery(r._mapping))
            rows = sorted(found.values(), key=lambda d: (d.kind != DeliveryKind.ALERT, d.id))[
                :limit
            ]
            if rows:
                await conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_([r.id for r in rows]))
                    .values(
                        status=DeliveryStatus.SENDING, lease_until=now + timedelta(seconds=lease)
                    )
                )
        return rows

    async def renew(self, delivery_ids: Sequence[int], until: datetime) -> int:
        """Extend the lease of rows still being sent to `until`; return how many were extended."""
        if not delivery_ids:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.status == DeliveryStatus.SENDING,
                )
                .values(lease_until=until)
            )
            return int(result.rowcount)

    async def release(self, delivery_ids: Sequence[int], not_before: datetime | None) -> None:
        """Hand claimed rows back unsent, due at `not_before`; no attempt is charged."""
        if not delivery_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.status == DeliveryStatus.SENDING,
                )
                .values(status=DeliveryStatus.PENDING, lease_until=None, next_attempt_at=not_before)
            )

    async def cancel(self, delivery_ids: Sequence[int], reason: str) -> None:
        """Owe these rows no more (the chat unsubscribed); they are never sent."""
        if not delivery_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(delivery_ids)))
                .values(status=DeliveryStatus.CANCELLED, lease_until=None, last_error=reason[:500])
            )

    async def release_sending(self) -> int:
        """Make rows left 'sending' by a crashed process due now; only safe for a lone instance."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                deliveries.update()
                .where(deliveries.c.status == DeliveryStatus.SENDING)
                .values(status=DeliveryStatus.PENDING, lease_until=None)
            )
            return result.rowcount

    async def article_for_message(self, chat: ChatRef, message_id: str) -> str | None:
        """The article an alert we sent to `chat` as `message_id` was about."""
        query = sa.select(deliveries.c.payload, deliveries.c.message_ids).where(
            deliveries.c.platform == chat.platform,
            deliveries.c.chat_id == chat.chat_id,
            deliveries.c.kind == DeliveryKind.ALERT,
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.message_ids.contains(json.dumps(message_id)),
        )
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                if message_id in json.loads(row.message_ids or "[]"):
                    owed = decode(DeliveryKind.ALERT, row.payload)
                    return owed.article_id if isinstance(owed, AlertOwed) else None
        return None

    async def backlog(self, now: datetime) -> tuple[int, float]:
        """Deliveries not yet sent, and how many seconds the oldest due one has waited."""
        waiting = sa.select(
            sa.func.count(),
            sa.func.min(sa.func.coalesce(deliveries.c.next_attempt_at, deliveries.c.created_at)),
        ).where(deliveries.c.status.in_(OWED))
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(waiting)).one()
        oldest = aware(oldest)
        lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        return int(count or 0), lag

    async def next_due(self, platforms: Sequence[str] | None = None) -> datetime | None:
        """When the next pending delivery becomes due (None: nothing pending)."""
        query = sa.select(
            sa.func.min(sa.func.coalesce(deliveries.c.next_attempt_at, deliveries.c.created_at))
        ).where(deliveries.c.status == DeliveryStatus.PENDING)
        if platforms is not None:
            query = query.where(deliveries.c.platform.in_(list(platforms)))
        async with self.engine.connect() as conn:
            return aware((await conn.execute(query)).scalar())

    async def mark_sent(
        self, delivery_id: int, at: datetime, message_ids: Sequence[str], latency_ms: int | None
    ) -> None:
        """Record that the platform acknowledged a delivery."""
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(
                    status=DeliveryStatus.SENT,
                    sent_at=at,
                    attempts=deliveries.c.attempts + 1,
                    message_ids=json.dumps(list(message_ids)),
                    latency_ms=latency_ms,
                    lease_until=None,
                    last_error=None,
                )
            )

    async def mark_retry(
        self,
        delivery_id: int,
        error: str,
        next_attempt_at: datetime,
        count: bool = True,
        *,
        parts: tuple[int, Sequence[str]] | None = None,
    ) -> None:
        """A send failed but may succeed later; `count=False` for waits the platform asked for.

        `parts`: how many parts of the post are delivered in all, and their message ids, so the
        next attempt resumes after them.
        """
        values: dict[str, Any] = {
            "status": DeliveryStatus.PENDING,
            "last_error": error[:500],
            "next_attempt_at": next_attempt_at,
            "lease_until": None,
        }
        if count:
            values["attempts"] = deliveries.c.attempts + 1
        if parts is not None:
            values["parts_sent"] = parts[0]
            values["message_ids"] = json.dumps(list(parts[1]))
        async with self.engine.begin() as conn:
            # Only a row still being sent: one cancelled meanwhile (unsubscribed, merged into
            # another chat's after a migration) stays cancelled.
            await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.SENDING
                )
                .values(values)
            )

    async def mark_failed(self, delivery_id: int, error: str) -> None:
        """Give up on a delivery, keeping why."""
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.id == delivery_id, deliveries.c.status != DeliveryStatus.CANCELLED
                )
                .values(
                    status=DeliveryStatus.FAILED,
                    last_error=error[:500],
                    attempts=deliveries.c.attempts + 1,
                    lease_until=None,
                )
            )

    async def deliveries(self, status: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows as dicts (for reports and tests)."""
        query = sa.select(deliveries).order_by(deliveries.c.id)
        if status:
            query = query.where(deliveries.c.status == status)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def compose(
        self, groups: Sequence[Sequence[Delivery]], now: datetime
    ) -> list[Post | None]:
        """The post of each group of rows (None: its articles are gone), built off the loop."""
        ids = list(dict.fromkeys(i for group in groups for row in group for i in _article_ids(row)))
        entries = await self.catalog.entries(ids) if ids else []
        found = {article.id: (article, verdict) for article, verdict in entries}
        digest_ids = list(
            dict.fromkeys(
                i
                for group in groups
                for row in group
                if isinstance(row.owed, DigestOwed)
                for i in _article_ids(row)
                if i in found
            )
        )
        reports = await self.catalog.also_reported(digest_ids) if digest_ids else {}
        return await asyncio.to_thread(_build_all, groups, found, reports, now)

    async def seen_at(self, article_ids: Sequence[str]) -> dict[str, datetime]:
        """When each article first appeared (for an alert's latency)."""
        return await self.catalog.seen_at(article_ids)

    async def prune(self, before: datetime) -> int:
        """Delete deliveries finished and created before `before`; return how many."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                deliveries.delete().where(
                    deliveries.c.status.in_(FINISHED), deliveries.c.created_at < before
                )
            )
            return int(done.rowcount)


class Lease:
    """A sender's hold on the rows it claimed, renewed while they are being sent.

    Every third of the lease the rows not yet finished get a new `lease_until`, so a long send
    (a flood wait, the parts of a long post) is never claimed by another instance meanwhile. The
    renewals run on this process's event loop: when it dies they stop, and its rows are free for
    the other instances one lease later.
    """

    def __init__(
        self,
        ledger: Ledger,
        rows: Iterable[Delivery],
        seconds: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ledger, self.seconds, self.clock, self.sleep = ledger, seconds, clock, sleep
        self.held = {row.id for row in rows}
        self.renewals = 0
        self._task: asyncio.Task[None] | None = None

    def done(self, delivery_ids: Iterable[int]) -> None:
        """These rows are finished or handed back: renew them no more."""
        self.held.difference_update(delivery_ids)

    async def __aenter__(self) -> Lease:
        self._task = asyncio.create_task(self._renew())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _renew(self) -> None:
        while True:
            await self.sleep(self.seconds / 3)
            if not self.held:
                continue
            try:
                until = self.clock() + timedelta(seconds=self.seconds)
                await self.ledger.renew(sorted(self.held), until)
                self.renewals += 1
            except Exception as exc:
                # Two more tries before the lease runs out; after that the rows may go twice.
                log.warning(
                    "renewing the lease of %d deliveries failed (%s)",
                    len(self.held),
                    type(exc).__name__,
                )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        chat=ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None),
        kind=row["kind"],
        key=row["key"],
        owed=decode(row["kind"], row["payload"]),
        attempts=row["attempts"],
        created_at=aware(row["created_at"]) or utcnow(),
        parts_sent=row["parts_sent"] or 0,
        message_ids=tuple(json.loads(row["message_ids"] or "[]")),
    )


def _article_ids(delivery: Delivery) -> list[str]:
    match delivery.owed:
        case AlertOwed(article_id=article_id):
            return [article_id]
        case DigestOwed(article_ids=ids):
            return list(ids)
    return []


def build_post(
    delivery: Delivery,
    found: Mapping[str, tuple[Article, Verdict]],
    reports: Mapping[str, list[Article]],
) -> Post | None:
    """The post a ledger row stands for, from articles already loaded; CPU work, pure."""
    match delivery.owed:
        case AlertOwed(article_id=article_id, lang=lang):
            entry = found.get(article_id)
            if entry is None:
                return None
            return Alert(digest.item(*entry, lang=lang), lang=lang)
        case DigestOwed(article_ids=ids, since=since, lang=lang):
            built = digest.build(
                [found[i] for i in ids if i in found],
                now=delivery.created_at,
                since=since,
                max_items=len(ids) or 1,
                lang=lang,
            )
            return with_also_reported(built, reports)
        case NoticeOwed(text=text):
            return Notice(text)
    log.warning("delivery %d has unknown kind %r; skipped", delivery.id, delivery.kind)
    return None


def with_also_reported(built: Digest, reports: Mapping[str, list[Article]]) -> Digest:
    """Name the other sources of each story under its item."""
    items = []
    for entry in built.items:
        others = reports.get(entry.article_id, [])
        names = tuple(dict.fromkeys((digest.source_of(a) or a.id) for a in others))
        items.append(replace(entry, also_reported_by=names) if names else entry)
    return replace(built, items=tuple(items))


def _build_all(
    groups: Sequence[Sequence[Delivery]],
    found: Mapping[str, tuple[Article, Verdict]],
    reports: Mapping[str, list[Article]],
    now: datetime,
) -> list[Post | None]:
    """Posts for each group; a fan-out's one payload is built once. Runs in a worker thread."""
    built: dict[tuple[str, Owed | None], Post | None] = {}

    def one(row: Delivery) -> Post | None:
        key = (row.kind, row.owed)
        if key not in built:
            built[key] = build_post(row, found, reports)
        return built[key]

    posts: list[Post | None] = []
    for group in groups:
        if len(group) == 1:
            posts.append(one(group[0]))
            continue
        # A burst of alerts for one chat goes out as one message rather than a stream of them.
        items = [post.item for post in map(one, group) if isinstance(post, Alert)]
        first = group[0].owed
        lang = first.lang if first is not None else "en"
        merged = Digest(items=tuple(items), generated_at=now, lang=lang, alerts=True)
        posts.append(merged if items else None)
    return posts
