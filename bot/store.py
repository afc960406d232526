"""The database: articles, verdicts, subscriptions, deliveries and feedback over SQLAlchemy Core.

SQLite (default, one file) and PostgreSQL share this code; callers never see SQL. The schema is
versioned in `schema_version` and upgraded in place by the ordered MIGRATIONS, so an upgrade never
loses data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot import search
from bot.articles import Rejection, content_hash
from bot.models import Article, ChatRef, Level, Preferences, Verdict

log = logging.getLogger(__name__)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Convert to UTC on the way in."""
        # SQLite keeps the wall-clock digits and drops the offset, so convert before storing.
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Timezone-aware UTC on the way out."""
        return _aware(value)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", UTCDateTime(), nullable=False),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("published", sa.String(40)),
    sa.Column("place", sa.Text),
    sa.Column("agency", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("seen_at", UTCDateTime(), nullable=False, index=True),
    # The first article of the story this one reports again (same event elsewhere); None: itself.
    sa.Column("story_id", sa.String(200), index=True),
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    sa.Column(
        "article_id",
        sa.String(200),
        sa.ForeignKey("articles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("conflict", sa.Boolean, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False, index=True),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("topics", sa.Text, nullable=False),
    sa.Column("classified_at", UTCDateTime(), nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(100), nullable=False),
    # '' not NULL: NULLs never collide in a UNIQUE constraint, so a chat could subscribe twice.
    sa.Column("thread_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("lang", sa.String(8), nullable=False, server_default="en"),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_digest_at", UTCDateTime()),
    sa.UniqueConstraint("platform", "chat_id", "thread_id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(100), nullable=False),
    sa.Column("thread_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("payload", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("message_ids", sa.Text),
    # A claimed row is being sent until this time; a crashed sender's rows are retried after it.
    sa.Column("lease_until", UTCDateTime()),
    # From the article appearing (file seen / feed fetched) to the platform acknowledging.
    sa.Column("latency_ms", sa.Integer),
    # Parts of a multi-part post the platform acknowledged; a retry resumes after them.
    sa.Column("parts_sent", sa.Integer, server_default="0"),
    sa.UniqueConstraint("platform", "chat_id", "thread_id", "kind", "key"),
    # What `claim` asks for, in id order: without these, every claim of a 100,000-chat digest
    # sorted all pending rows (claim cost grew with the backlog, 0.16 s per claim at 100k).
    sa.Index("ix_deliveries_status_id", "status", "id"),
    sa.Index("ix_deliveries_status_kind_id", "status", "kind", "id"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "article_id",
        sa.String(200),
        sa.ForeignKey("articles.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(100), nullable=False),
    sa.Column("user_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("relevant", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("article_id", "platform", "chat_id", "user_id"),
)


sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    # "config" sources come from newsbot.toml; others were added in a chat ("telegram:-100…").
    sa.Column("added_by", sa.String(120), nullable=False, server_default="config"),
    sa.Column("interval_seconds", sa.Integer, nullable=False, server_default="600"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("last_fetched_at", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


# What retention pruning deleted: a feed that still lists a pruned story must not make it new.
tombstones = sa.Table(
    "tombstones",
    metadata,
    sa.Column("article_id", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, index=True),
    sa.Column("pruned_at", UTCDateTime(), nullable=False),
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[articles, verdicts, subscriptions, deliveries, feedback])


def _add_columns(conn: Connection, table: sa.Table, names: Sequence[str]) -> None:
    present = {column["name"] for column in sa.inspect(conn).get_columns(table.name)}
    for name in names:
        if name not in present:
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{name}" {kind}'))


def _v2_pipeline(conn: Connection) -> None:
    """Stories, delivery leases and latency, and the sources table."""
    _add_columns(conn, articles, ["story_id"])
    _add_columns(conn, deliveries, ["lease_until", "latency_ms"])
    metadata.create_all(conn, tables=[sources])
    for index in articles.indexes:
        index.create(conn, checkfirst=True)


def _v3_delivery_core(conn: Connection) -> None:
    """Multi-part resume in the ledger, and tombstones of pruned articles."""
    _add_columns(conn, deliveries, ["parts_sent"])
    metadata.create_all(conn, tables=[tombstones])
    for index in tombstones.indexes:
        index.create(conn, checkfirst=True)


def _v5_claim_indexes(conn: Connection) -> None:
    """Indexes that keep claiming due deliveries cheap however long the backlog is."""
    for index in deliveries.indexes:
        index.create(conn, checkfirst=True)


# Ordered schema upgrades; version N is MIGRATIONS[N-1]. Never edit a shipped step: append one.
# Steps must be idempotent (check before altering), because migration 1 creates the tables from
# the live `metadata`, which already has the columns that later steps add to old databases.
MIGRATIONS: list[Callable[[Connection], None]] = [
    _create_v1,
    _v2_pipeline,
    _v3_delivery_core,
    search.create_schema,
    _v5_claim_indexes,
]


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer newsbot; this one must not write to it."""


@dataclass(frozen=True, slots=True)
class IngestCounts:
    """What adding a batch of articles did."""

    new: int = 0
    updated: int = 0
    duplicate: int = 0
    # Records refused at the database's edge (the reason is logged, naming the record and field).
    rejected: int = 0

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(
            self.new + other.new,
            self.updated + other.updated,
            self.duplicate + other.duplicate,
            self.rejected + other.rejected,
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A chat that receives alerts and digests."""

    id: int
    chat: ChatRef
    active: bool
    lang: str
    prefs: Preferences
    last_digest_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the outbox: a post owed to one chat."""

    id: int
    chat: ChatRef
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    # Parts of a multi-part post already acknowledged, and their message ids.
    parts_sent: int = 0
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedSource:
    """A feed newsbot polls, with its HTTP cache validators and error state."""

    id: int
    url: str
    name: str
    added_by: str
    interval_seconds: int
    etag: str | None = None
    last_modified: str | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    last_fetched_at: datetime | None = None


def normalise_url(url: str) -> str:
    """Pick the async driver for plain `sqlite:///` and `postgresql://` URLs."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            url = driver + url[len(plain) :]
            break
    if url.startswith("postgresql+asyncpg://") and "sslmode=" in url:
        # libpq's `sslmode` (common in PostgreSQL URLs) is `ssl` for asyncpg, same values.
        parsed = sa.make_url(url)
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        url = parsed.set(query=query).render_as_string(hide_password=False)
    return url


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# Ledger states that need no more sending; "cancelled": the chat unsubscribed before it went out.
FINISHED = ("sent", "failed", "cancelled")


class Store:
    """Async access to newsbot's database; open with `async with Store.open(url) as store`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Store]:
        """Connect, upgrade the schema, and dispose of the engine on exit."""
        url = normalise_url(url)
        sa_url = sa.make_url(url)
        if sa_url.get_backend_name() == "sqlite" and sa_url.database not in (None, "", ":memory:"):
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        # A pooled PostgreSQL connection can die with its server (restart, failover, a proxy
        # cutting it); pre-ping replaces it on checkout instead of failing every later query.
        # hide_parameters: a database error's text (logged, or printed by the CLI) would
        # otherwise carry the statement's values — chat ids, user ids, message text.
        postgres = sa_url.get_backend_name() == "postgresql"
        engine = create_async_engine(url, pool_pre_ping=postgres, hide_parameters=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            await store.migrate()
            yield store
        finally:
            await engine.dispose()

    async def migrate(self) -> int:
        """Apply pending schema upgrades; return the schema version now in force."""
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several instances may start at once; one migrates, the others wait for it.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(4711001)"))
            await conn.run_sync(lambda c: schema_version.create(c, checkfirst=True))
            current = (
                await conn.execute(sa.select(sa.func.max(schema_version.c.version)))
            ).scalar() or 0
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the database has schema version {current}, newer than this newsbot "
                    f"knows ({len(MIGRATIONS)}): upgrade newsbot, or use another database"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                log.info("upgrading database schema to version %d", version)
                await conn.run_sync(MIGRATIONS[version - 1])
                await conn.execute(
                    schema_version.insert().values(version=version, applied_at=_now())
                )
            return max(current, len(MIGRATIONS))

    # --- articles -------------------------------------------------------------------------

    async def add_articles(
        self,
        batch: Iterable[Article],
        seen_at: datetime | None = None,
        verdicts: Mapping[str, Verdict] | None = None,
    ) -> tuple[IngestCounts, list[Article]]:
        """Store articles; return counts and the articles that are new or changed (to classify).

        `verdicts` (by article id) are stored in the same transaction as their articles, so an
        article is never left stored without the verdict computed for it.
        """
        seen_at = seen_at or _now()
        items = list(batch)
        cleaned, rejected = clean_batch(items)
        # An earlier record of an id that a later one in the batch replaced counts as duplicate.
        superseded = len(items) - len(rejected) - len(cleaned)
        counts = IngestCounts(duplicate=superseded, rejected=len(rejected))
        changed: list[Article] = []
        docs = await asyncio.to_thread(search.documents, cleaned)  # full-text rows: CPU work
        async with self.engine.begin() as conn:
            for start in range(0, len(cleaned), 500):
                chunk = cleaned[start : start + 500]
                c, ch = await self._add_chunk(conn, chunk, seen_at)
                await conn.run_sync(search.put, ch, docs)
                counts += c
                changed += ch
            rows = [
                _verdict_row(verdicts[a.id], seen_at)
                for a in changed
                if verdicts is not None and a.id in verdicts
            ]
            await _replace_verdicts(conn, rows)
        return counts, changed

    async def pending_changes(self, batch: Iterable[Article]) -> list[Article]:
        """The articles of `batch` that `add_articles` would store as new or changed (read only)."""
        # Rejections are logged once, when the batch is stored.
        cleaned, _ = clean_batch(batch, quiet=True)
        changed: list[Article] = []
        async with self.engine.connect() as conn:
            for start in range(0, len(cleaned), 500):
                chunk = cleaned[start : start + 500]
                _, known_hashes = await _known(conn, chunk)
                for article in chunk:
                    digest = content_hash(article.title, article.text)
                    if digest not in known_hashes:
                        known_hashes.add(digest)
                        changed.append(article)
        return changed

    async def _add_chunk(
        self,
        conn: AsyncConnection,
        chunk: Sequence[Article],
        seen_at: datetime,
    ) -> tuple[IngestCounts, list[Article]]:
        by_id, known_hashes = await _known(conn, chunk)
        new_rows: list[dict[str, Any]] = []
        changed: list[Article] = []
        updated = duplicate = 0
        for article in chunk:
            digest = content_hash(article.title, article.text)
            if digest in known_hashes:
                duplicate += 1
                continue
            known_hashes.add(digest)
            row = _article_row(article, digest, seen_at)
            if article.id in by_id:
                # Same id, new content: the source corrected or extended the story.
                await conn.execute(articles.update().where(articles.c.id == article.id).values(row))
                updated += 1
            else:
                new_rows.append(row)
                by_id[article.id] = digest
            changed.append(article)
        if new_rows:
            await conn.execute(articles.insert(), new_rows)
            # A pruned article that comes back changed is stored again: its tombstone goes.
            await conn.execute(
                tombstones.delete().where(tombstones.c.article_id.in_([r["id"] for r in new_rows]))
            )
        return IngestCounts(len(new_rows), updated, duplicate), changed

    async def unclassified(self, limit: int = 500) -> list[Article]:
        """Stored articles without a verdict (a crash between the two, or an old database)."""
        query = (
            sa.select(articles)
            .outerjoin(verdicts, verdicts.c.article_id == articles.c.id)
            .where(verdicts.c.article_id.is_(None))
            .order_by(articles.c.seen_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_article(r._mapping) for r in await conn.execute(query)]

    async def get_article(self, article_id: str) -> Article | None:
        """One article by id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(articles).where(articles.c.id == article_id))
            ).first()
        return _article(row._mapping) if row else None

    async def all_articles(self) -> list[Article]:
        """Every stored article, newest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(articles).order_by(articles.c.seen_at.desc()))
            return [_article(r._mapping) for r in rows]

    async def count_articles(self) -> int:
        """How many articles are stored."""
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(articles))).scalar() or 0
            )

    # --- verdicts -------------------------------------------------------------------------

    async def save_verdicts(self, batch: Iterable[Verdict], at: datetime | None = None) -> None:
        """Store (or replace) classifier verdicts."""
        rows = [_verdict_row(v, at or _now()) for v in batch]
        if not rows:
            return
        async with self.engine.begin() as conn:
            await _replace_verdicts(conn, rows)

    async def scores(self) -> dict[str, float]:
        """Every article's conflict score (articles not yet classified are absent)."""
        async with self.engine.connect() as conn:
            return dict(
                (await conn.execute(sa.select(verdicts.c.article_id, verdicts.c.score))).all()
            )

    async def flagged(
        self, min_score: float, since: datetime | None = None, limit: int = 200
    ) -> list[tuple[Article, Verdict, datetime]]:
        """Articles scoring at least `min_score` seen after `since`, best first, with when seen."""
        query = (
            sa.select(articles, verdicts)
            .join(verdicts, verdicts.c.article_id == articles.c.id)
            .where(verdicts.c.score >= min_score)
            .order_by(verdicts.c.score.desc(), articles.c.seen_at.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(articles.c.seen_at > since)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                (
                    _article(r._mapping),
                    _verdict(r._mapping),
                    _aware(r._mapping["seen_at"]) or _now(),
                )
                for r in rows
            ]

    # --- subscriptions --------------------------------------------------------------------

    async def subscribe(self, chat: ChatRef, lang: str, prefs: Preferences | None = None) -> bool:
        """Subscribe (or re-activate) a chat; True when it was not active before."""
        key = (chat.platform, chat.chat_id, chat.thread_id or "")
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(subscriptions.c.id, subscriptions.c.active).where(
                        subscriptions.c.platform == key[0],
                        subscriptions.c.chat_id == key[1],
                        subscriptions.c.thread_id == key[2],
                    )
                )
            ).first()
            if row is None:
                await conn.execute(
                    subscriptions.insert().values(
                        platform=key[0],
                        chat_id=key[1],
                        thread_id=key[2],
                        active=True,
                        lang=lang,
                        settings=preferences_to_json(prefs or Preferences()),
                        created_at=_now(),
                    )
                )
                return True
            if row.active:
                return False
            await conn.execute(
                subscriptions.update().where(subscriptions.c.id == row.id).values(active=True)
            )
            return True

    async def unsubscribe(self, chat: ChatRef) -> bool:
        """Deactivate a chat's subscription (kept for its settings); True when it was active.

        Whatever the ledger still owes the chat (an alert held for quiet hours, a digest not yet
        sent) is cancelled with it: unsubscribing means nothing more arrives.
        """
        async with self.engine.begin() as conn:
            result = await conn.execute(
                subscriptions.update()
                .where(
                    subscriptions.c.platform == chat.platform,
                    subscriptions.c.chat_id == chat.chat_id,
                    subscriptions.c.thread_id == (chat.thread_id or ""),
                    subscriptions.c.active.is_(True),
                )
                .values(active=False)
            )
            await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.platform == chat.platform,
                    deliveries.c.chat_id == chat.chat_id,
                    deliveries.c.thread_id == (chat.thread_id or ""),
                    deliveries.c.status.in_(["pending", "sending"]),
                )
                .values(status="cancelled", lease_until=None, last_error="chat unsubscribed")
            )
            return bool(result.rowcount)

    async def inactive_chats(self, chats: Iterable[ChatRef]) -> set[ChatRef]:
        """Which of `chats` have a subscription that is no longer active."""
        wanted = {(c.platform, c.chat_id, c.thread_id or ""): c for c in chats}
        if not wanted:
            return set()
        query = sa.select(
            subscriptions.c.platform, subscriptions.c.chat_id, subscriptions.c.thread_id
        ).where(
            subscriptions.c.active.is_(False),
            subscriptions.c.chat_id.in_(sorted({key[1] for key in wanted})),
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return {wanted[key] for key in (tuple(r) for r in rows) if key in wanted}

    async def subscription(self, chat: ChatRef) -> Subscription | None:
        """The subscription of one chat, active or not."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(subscriptions).where(
                        subscriptions.c.platform == chat.platform,
                        subscriptions.c.chat_id == chat.chat_id,
                        subscriptions.c.thread_id == (chat.thread_id or ""),
                    )
                )
            ).first()
        return _subscription(row._mapping) if row else None

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        """One subscription by its id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(subscriptions).where(subscriptions.c.id == subscription_id)
                )
            ).first()
        return _subscription(row._mapping) if row else None

    async def subscriptions(self, platform: str | None = None) -> list[Subscription]:
        """Active subscriptions, optionally of one platform."""
        query = sa.select(subscriptions).where(subscriptions.c.active.is_(True))
        if platform:
            query = query.where(subscriptions.c.platform == platform)
        async with self.engine.connect() as conn:
            return [
                _subscription(r._mapping)
                for r in await conn.execute(query.order_by(subscriptions.c.id))
            ]

    async def mark_digest(self, subscription_id: int, at: datetime) -> None:
        """Remember when a chat last received a digest."""
        async with self.engine.begin() as conn:
            await conn.execute(
                subscriptions.update()
                .where(subscriptions.c.id == subscription_id)
                .values(last_digest_at=at)
            )

    # --- feedback -------------------------------------------------------------------------

    async def add_feedback(
        self, article_id: str, chat: ChatRef, user_id: str, relevant: bool
    ) -> None:
        """Record (or change) one user's judgement of an alert."""
        async with self.engine.begin() as conn:
            await conn.execute(
                feedback.delete().where(
                    feedback.c.article_id == article_id,
                    feedback.c.platform == chat.platform,
                    feedback.c.chat_id == chat.chat_id,
                    feedback.c.user_id == user_id,
                )
            )
            await conn.execute(
                feedback.insert().values(
                    article_id=article_id,
                    platform=chat.platform,
                    chat_id=chat.chat_id,
                    user_id=user_id,
                    relevant=relevant,
                    created_at=_now(),
                )
            )

    async def feedback_examples(self) -> list[tuple[Article, bool]]:
        """Articles with the majority judgement of the users who marked them."""
        query = (
            sa.select(
                articles, sa.func.avg(sa.cast(feedback.c.relevant, sa.Integer)).label("share")
            )
            .join(feedback, feedback.c.article_id == articles.c.id)
            .group_by(*articles.c)
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [(_article(r._mapping), float(r._mapping["share"]) >= 0.5) for r in rows]

    # --- preferences ----------------------------------------------------------------------

    async def set_preferences(
        self, chat: ChatRef, prefs: Preferences, lang: str | None = None
    ) -> None:
        """Save a chat's preferences (and reply language); the chat must have subscribed once."""
        values: dict[str, Any] = {"settings": preferences_to_json(prefs)}
        if lang:
            values["lang"] = lang
        async with self.engine.begin() as conn:
            await conn.execute(_chat_update(chat).values(values))

    async def deactivate(self, chat: ChatRef) -> None:
        """Stop sending to a chat that blocked or removed the bot (until it subscribes again)."""
        async with self.engine.begin() as conn:
            await conn.execute(_chat_update(chat).values(active=False))
            await conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.platform == chat.platform,
                    deliveries.c.chat_id == chat.chat_id,
                    deliveries.c.status.in_(["pending", "sending"]),
                )
                .values(status="failed", last_error="chat unavailable: subscription deactivated")
            )

    async def migrate_chat(self, chat: ChatRef, new_chat_id: str) -> None:
        """A chat got a new id (Telegram group → supergroup): move its subscription and outbox.

        When the new id already has a subscription (someone sent /start in the supergroup), the
        two are merged: the existing one stays, the old one goes, and a post owed at both ids
        is owed once.
        """
        old_chat = (subscriptions.c.platform == chat.platform) & (
            subscriptions.c.chat_id == chat.chat_id
        )
        async with self.engine.begin() as conn:
            taken = set(
                (
                    await conn.execute(
                        sa.select(subscriptions.c.thread_id).where(
                            subscriptions.c.platform == chat.platform,
                            subscriptions.c.chat_id == new_chat_id,
                        )
                    )
                ).scalars()
            )
            # Every topic of the old chat moves along, whichever topic the failed send was for.
            for row in await conn.execute(
                sa.select(subscriptions.c.id, subscriptions.c.thread_id).where(old_chat)
            ):
                if row.thread_id in taken:
                    await conn.execute(subscriptions.delete().where(subscriptions.c.id == row.id))
                else:
                    await conn.execute(
                        subscriptions.update()
                        .where(subscriptions.c.id == row.id)
                        .values(chat_id=new_chat_id)
                    )
            owed_there = {
                (r.thread_id, r.kind, r.key)
                for r in await conn.execute(
                    sa.select(deliveries.c.thread_id, deliveries.c.kind, deliveries.c.key).where(
                        deliveries.c.platform == chat.platform,
                        deliveries.c.chat_id == new_chat_id,
                    )
                )
            }
            owed_here = await conn.execute(
                sa.select(
                    deliveries.c.id, deliveries.c.thread_id, deliveries.c.kind, deliveries.c.key
                ).where(
                    deliveries.c.platform == chat.platform,
                    deliveries.c.chat_id == chat.chat_id,
                    deliveries.c.status.in_(["pending", "sending"]),
                )
            )
            for owed in owed_here.all():
                if (owed.thread_id, owed.kind, owed.key) in owed_there:
                    change: dict[str, Any] = {
                        "status": "cancelled",
                        "lease_until": None,
                        "last_error": f"already owed at the chat's new id {new_chat_id}",
                    }
                else:
                    change = {"chat_id": new_chat_id}
                await conn.execute(
                    deliveries.update().where(deliveries.c.id == owed.id).values(change)
                )

    # --- stories --------------------------------------------------------------------------

    async def recent(
        self, since: datetime, limit: int | None = 5000, text_chars: int | None = None
    ) -> list[tuple[Article, str, datetime]]:
        """Articles seen after `since`, newest first, each with its story id and when it was seen.

        `text_chars` loads only the start of each text (what story signatures read).
        """
        text: sa.ColumnElement[Any] = articles.c.text
        if text_chars is not None:
            text = sa.func.substr(articles.c.text, 1, text_chars).label("text")
        columns: list[sa.ColumnElement[Any]] = [c for c in articles.c if c.name != "text"]
        query = (
            sa.select(*columns, text)
            .where(articles.c.seen_at > since)
            .order_by(articles.c.seen_at.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                (
                    _article(r._mapping),
                    r._mapping["story_id"] or r._mapping["id"],
                    r._mapping["seen_at"],
                )
                for r in rows
            ]

    async def set_stories(self, stories: dict[str, str]) -> None:
        """Record which story each article belongs to (article id → first article's id)."""
        # Most articles start their own story, which NULL already says; write only the others.
        later = [
            {"aid": article_id, "sid": story_id}
            for article_id, story_id in stories.items()
            if story_id != article_id
        ]
        if not later:
            return
        statement = (
            articles.update()
            .where(articles.c.id == sa.bindparam("aid"))
            .values(story_id=sa.bindparam("sid"))
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement, later)

    async def story_ids(self, article_ids: Sequence[str]) -> dict[str, str]:
        """The story each article belongs to (its own id when it is the first report)."""
        if not article_ids:
            return {}
        query = sa.select(articles.c.id, articles.c.story_id).where(
            articles.c.id.in_(list(article_ids))
        )
        async with self.engine.connect() as conn:
            return {r.id: r.story_id or r.id for r in await conn.execute(query)}

    async def also_reported(self, story_ids: Sequence[str]) -> dict[str, list[Article]]:
        """Other articles of each story (the later reports), oldest first."""
        if not story_ids:
            return {}
        query = (
            sa.select(articles)
            .where(articles.c.story_id.in_(list(story_ids)), articles.c.id != articles.c.story_id)
            .order_by(articles.c.seen_at)
        )
        result: dict[str, list[Article]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                result.setdefault(row._mapping["story_id"], []).append(_article(row._mapping))
        return result

    async def seen_at(self, article_ids: Sequence[str]) -> dict[str, datetime]:
        """When each article first appeared."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(articles.c.id, articles.c.seen_at).where(
                    articles.c.id.in_(list(article_ids))
                )
            )
            return {r.id: _aware(r.seen_at) or _now() for r in rows}

    async def entries(self, article_ids: Sequence[str]) -> list[tuple[Article, Verdict]]:
        """Articles with their verdicts, in the order of `article_ids` (missing ones left out)."""
        query = (
            sa.select(articles, verdicts)
            .join(verdicts, verdicts.c.article_id == articles.c.id)
            .where(articles.c.id.in_(list(article_ids)))
        )
        async with self.engine.connect() as conn:
            found = {
                r._mapping["id"]: (_article(r._mapping), _verdict(r._mapping))
                for r in await conn.execute(query)
            }
        return [found[i] for i in article_ids if i in found]

    # --- outbox ---------------------------------------------------------------------------

    async def enqueue_many(
        self, owed: Sequence[tuple[ChatRef, str, str, dict[str, Any], datetime | None]]
    ) -> int:
        """Owe several posts at once (chat, kind, key, payload, not_before); return how many new."""
        if not owed:
            return 0
        rows = [
            {
                "platform": chat.platform,
                "chat_id": chat.chat_id,
                "thread_id": chat.thread_id or "",
                "kind": kind,
                "key": key,
                "status": "pending",
                "payload": json.dumps(payload, ensure_ascii=False),
                "created_at": _now(),
                "next_attempt_at": not_before,
            }
            for chat, kind, key, payload, not_before in owed
        ]
        inserted = 0
        async with self.engine.begin() as conn:
            # RETURNING counts exactly the rows this call added, whatever other instances do.
            statement = _insert_ignore(conn, deliveries).returning(deliveries.c.id)
            for start in range(0, len(rows), 500):
                result = await conn.execute(statement, rows[start : start + 500])
                inserted += len(result.all())
        return inserted

    async def enqueue(
        self,
        chat: ChatRef,
        kind: str,
        key: str,
        payload: dict[str, Any],
        not_before: datetime | None = None,
    ) -> bool:
        """Owe `chat` a post, once: False when the same (chat, kind, key) was owed before."""
        return await self.enqueue_many([(chat, kind, key, payload, not_before)]) == 1

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
        pending = deliveries.c.status == "pending"
        # Three index walks that each stop after `limit` rows, instead of ordering the whole
        # backlog by "alert first" for every claim: the first `limit` of their union are the
        # first `limit` of all due rows.
        parts = [
            sa.select(deliveries)
            .where(pending, deliveries.c.kind == "alert", due)
            .order_by(deliveries.c.id),
            sa.select(deliveries).where(pending, due).order_by(deliveries.c.id),
            # Lapsed leases are few (a sender died): ordered as a whole, alerts first.
            sa.select(deliveries)
            .where(deliveries.c.status == "sending", deliveries.c.lease_until < now)
            .order_by(sa.case((deliveries.c.kind == "alert", 0), else_=1), deliveries.c.id),
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
            rows = sorted(found.values(), key=lambda d: (d.kind != "alert", d.id))[:limit]
            if rows:
                await conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_([r.id for r in rows]))
                    .values(status="sending", lease_until=now + timedelta(seconds=lease))
                )
        return rows

    async def release(self, delivery_ids: Sequence[int], not_before: datetime | None) -> None:
        """Hand claimed rows back unsent, due at `not_before`; no attempt is charged."""
        if not delivery_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(delivery_ids)), deliveries.c.status == "sending")
                .values(status="pending", lease_until=None, next_attempt_at=not_before)
            )

    async def cancel(self, delivery_ids: Sequence[int], reason: str) -> None:
        """Owe these rows no more (the chat unsubscribed); they are never sent."""
        if not delivery_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(delivery_ids)))
                .values(status="cancelled", lease_until=None, last_error=reason[:500])
            )

    async def release_sending(self) -> int:
        """Make rows left 'sending' by a crashed process due now; only safe for a lone instance."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                deliveries.update()
                .where(deliveries.c.status == "sending")
                .values(status="pending", lease_until=None)
            )
            return result.rowcount

    async def article_for_message(self, chat: ChatRef, message_id: str) -> str | None:
        """The article an alert we sent to `chat` as `message_id` was about."""
        query = sa.select(deliveries.c.payload, deliveries.c.message_ids).where(
            deliveries.c.platform == chat.platform,
            deliveries.c.chat_id == chat.chat_id,
            deliveries.c.kind == "alert",
            deliveries.c.status == "sent",
            deliveries.c.message_ids.contains(json.dumps(message_id)),
        )
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                if message_id in json.loads(row.message_ids or "[]"):
                    return str(json.loads(row.payload).get("article_id")) or None
        return None

    async def backlog(self, now: datetime) -> tuple[int, float]:
        """Deliveries not yet sent, and how many seconds the oldest due one has waited."""
        waiting = sa.select(
            sa.func.count(),
            sa.func.min(sa.func.coalesce(deliveries.c.next_attempt_at, deliveries.c.created_at)),
        ).where(deliveries.c.status.in_(["pending", "sending"]))
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(waiting)).one()
        oldest = _aware(oldest)
        lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        return int(count or 0), lag

    async def next_due(self, platforms: Sequence[str] | None = None) -> datetime | None:
        """When the next pending delivery becomes due (None: nothing pending)."""
        query = sa.select(
            sa.func.min(sa.func.coalesce(deliveries.c.next_attempt_at, deliveries.c.created_at))
        ).where(deliveries.c.status == "pending")
        if platforms is not None:
            query = query.where(deliveries.c.platform.in_(list(platforms)))
        async with self.engine.connect() as conn:
            return _aware((await conn.execute(query)).scalar())

    async def mark_sent(
        self, delivery_id: int, at: datetime, message_ids: Sequence[str], latency_ms: int | None
    ) -> None:
        """Record that the platform acknowledged a delivery."""
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(
                    status="sent",
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
            "status": "pending",
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
                .where(deliveries.c.id == delivery_id, deliveries.c.status == "sending")
                .values(values)
            )

    async def mark_failed(self, delivery_id: int, error: str) -> None:
        """Give up on a delivery, keeping why."""
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id, deliveries.c.status != "cancelled")
                .values(
                    status="failed",
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

    # --- sources --------------------------------------------------------------------------

    async def add_source(
        self, url: str, *, name: str = "", added_by: str = "config", interval_seconds: int = 600
    ) -> bool:
        """Add a feed (or re-activate it); False when it was already active."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(sources).where(sources.c.url == url))).first()
            if row is None:
                await conn.execute(
                    sources.insert().values(
                        url=url,
                        name=name,
                        added_by=added_by,
                        interval_seconds=interval_seconds,
                        created_at=_now(),
                    )
                )
                return True
            # A removed feed belongs to whoever adds it again; the config file owns what it lists.
            owner = added_by if (not row.active or added_by == "config") else row.added_by
            await conn.execute(
                sources.update()
                .where(sources.c.id == row.id)
                .values(
                    active=True,
                    interval_seconds=interval_seconds,
                    name=name or row.name,
                    added_by=owner,
                )
            )
            return not row.active

    async def remove_source(self, source: int | str) -> bool:
        """Stop polling a feed (by id or URL); its articles stay."""
        match = sources.c.id == source if isinstance(source, int) else sources.c.url == source
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sources.update().where(match, sources.c.active.is_(True)).values(active=False)
            )
            return bool(result.rowcount)

    async def source(self, source_id: int) -> FeedSource | None:
        """One feed by id (active or not)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sources).where(sources.c.id == source_id))).first()
        return _source(row._mapping) if row else None

    async def sources(self) -> list[FeedSource]:
        """Active feeds."""
        query = sa.select(sources).where(sources.c.active.is_(True)).order_by(sources.c.id)
        async with self.engine.connect() as conn:
            return [_source(r._mapping) for r in await conn.execute(query)]

    async def save_source_state(self, source: FeedSource) -> None:
        """Persist a feed's validators and error state after a fetch."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sources.update()
                .where(sources.c.id == source.id)
                .values(
                    etag=source.etag,
                    last_modified=source.last_modified,
                    failures=source.failures,
                    last_error=source.last_error,
                    next_attempt_at=source.next_attempt_at,
                    last_fetched_at=source.last_fetched_at,
                )
            )

    # --- retention ------------------------------------------------------------------------

    async def prune(self, before: datetime) -> tuple[int, int]:
        """Delete articles first seen and deliveries finished before `before`; return the counts."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                deliveries.delete().where(
                    deliveries.c.status.in_(FINISHED), deliveries.c.created_at < before
                )
            )
            old = sa.select(articles.c.id).where(articles.c.seen_at < before)
            # Remember what goes, so a feed that still lists it does not make it new again.
            await conn.execute(tombstones.delete().where(tombstones.c.article_id.in_(old)))
            await conn.execute(
                tombstones.insert().from_select(
                    ["article_id", "content_hash", "pruned_at"],
                    sa.select(
                        articles.c.id, articles.c.content_hash, sa.literal(_now(), UTCDateTime())
                    ).where(articles.c.seen_at < before),
                )
            )
            await conn.execute(verdicts.delete().where(verdicts.c.article_id.in_(old)))
            await conn.execute(feedback.delete().where(feedback.c.article_id.in_(old)))
            await conn.run_sync(search.forget, old)
            gone = await conn.execute(articles.delete().where(articles.c.seen_at < before))
            return gone.rowcount, done.rowcount

    # --- feedback import / export (classifier engineer) -----------------------------------

    async def import_feedback(
        self, judgements: Sequence[tuple[str, bool]], chat: ChatRef
    ) -> tuple[int, list[str]]:
        """Record judgements of stored articles as `chat`'s; return (imported, unknown ids)."""
        ids = list(dict.fromkeys(article_id for article_id, _ in judgements))
        known: set[str] = set()
        async with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = sa.select(articles.c.id).where(articles.c.id.in_(chunk))
                known.update((await conn.execute(query)).scalars())
            # The last judgement of an article in the file wins, as a changed vote does in chat.
            latest = {article_id: relevant for article_id, relevant in judgements}
            rows = [
                {
                    "article_id": article_id,
                    "platform": chat.platform,
                    "chat_id": chat.chat_id,
                    "user_id": "",
                    "relevant": relevant,
                    "created_at": _now(),
                }
                for article_id, relevant in latest.items()
                if article_id in known
            ]
            for start in range(0, len(rows), 500):
                chunk_ids = [r["article_id"] for r in rows[start : start + 500]]
                await conn.execute(
                    feedback.delete().where(
                        feedback.c.article_id.in_(chunk_ids),
                        feedback.c.platform == chat.platform,
                        feedback.c.chat_id == chat.chat_id,
                        feedback.c.user_id == "",
                    )
                )
            if rows:
                await conn.execute(feedback.insert(), rows)
        return len(rows), [article_id for article_id in ids if article_id not in known]

    async def export_feedback(self) -> list[dict[str, Any]]:
        """Every judgement, oldest first: id, relevant, platform, chat, user, when."""
        query = sa.select(feedback).order_by(feedback.c.created_at, feedback.c.id)
        async with self.engine.connect() as conn:
            return [
                {
                    "id": r.article_id,
                    "relevant": bool(r.relevant),
                    "platform": r.platform,
                    "chat_id": r.chat_id,
                    "user": r.user_id,
                    "at": (_aware(r.created_at) or _now()).isoformat(),
                }
                for r in await conn.execute(query)
            ]

    async def feedback_since(self, since: datetime | None) -> int:
        """How many judgements were recorded (or changed) after `since` (all when None)."""
        query = sa.select(sa.func.count()).select_from(feedback)
        if since is not None:
            query = query.where(feedback.c.created_at > since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)


async def _known(
    conn: AsyncConnection, chunk: Sequence[Article]
) -> tuple[dict[str, str], set[str]]:
    """Stored hashes by id for the chunk's ids, and which of its hashes are known (or pruned)."""
    ids = [a.id for a in chunk]
    hashes = [content_hash(a.title, a.text) for a in chunk]
    by_id = dict(
        (
            await conn.execute(
                sa.select(articles.c.id, articles.c.content_hash).where(articles.c.id.in_(ids))
            )
        ).all()
    )
    known = set(
        (
            await conn.execute(
                sa.select(articles.c.content_hash).where(articles.c.content_hash.in_(hashes))
            )
        ).scalars()
    )
    # A tombstone makes a pruned article's content "seen" for good: no second alert.
    known.update(
        (
            await conn.execute(
                sa.select(tombstones.c.content_hash).where(tombstones.c.content_hash.in_(hashes))
            )
        ).scalars()
    )
    return by_id, known


def _verdict_row(verdict: Verdict, at: datetime) -> dict[str, Any]:
    return {
        "article_id": verdict.article_id,
        "conflict": verdict.conflict,
        "score": verdict.score,
        "level": verdict.level.value,
        "reasons": json.dumps(list(verdict.reasons), ensure_ascii=False),
        "topics": json.dumps(list(verdict.topics), ensure_ascii=False),
        "classified_at": at,
    }


async def _replace_verdicts(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    # In chunks: PostgreSQL takes at most 32,767 parameters per statement (100,000 verdicts
    # of one feed document failed at once).
    for start in range(0, len(rows), 500):
        chunk = list(rows[start : start + 500])
        ids = [r["article_id"] for r in chunk]
        await conn.execute(verdicts.delete().where(verdicts.c.article_id.in_(ids)))
        await conn.execute(verdicts.insert(), chunk)


# Column widths of the articles table: longer values are refused by PostgreSQL.
ID_MAX, LANG_MAX, PUBLISHED_MAX = 200, 8, 40


def _clean_text(value: str) -> str:
    # PostgreSQL refuses NUL in text, and lone surrogates can't be encoded as UTF-8 at all.
    text = value.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean_published(value: str | None) -> str | None:
    """A publication date short enough to store: kept, rewritten as ISO 8601, or dropped."""
    if value is None:
        return None
    value = value.strip()
    if len(value) <= PUBLISHED_MAX:
        return value or None
    from email.utils import parsedate_to_datetime

    for parse in (datetime.fromisoformat, parsedate_to_datetime):
        try:
            return parse(value).isoformat()[:PUBLISHED_MAX]
        except (ValueError, TypeError, IndexError):
            continue
    # Unreadable and too long: the article is kept undated (its seen time stands in).
    return None


def clean_article(article: Article) -> Article | Rejection:
    """The article as the database can store it, or why it can't be stored."""
    fields = {
        name: _clean_text(value) if isinstance(value, str) else value
        for name, value in ((f.name, getattr(article, f.name)) for f in dataclasses.fields(Article))
    }
    fields["published"] = _clean_published(fields["published"])
    where = f"article {fields['id'][:80]!r}"
    if not fields["id"].strip():
        return Rejection(where, "id: empty")
    if len(fields["id"]) > ID_MAX:
        return Rejection(where, f"id: {len(fields['id'])} characters, at most {ID_MAX}")
    if len(fields["lang"]) > LANG_MAX:
        return Rejection(where, f"lang: {fields['lang'][:20]!r} is not a language code")
    return Article(**fields)


def clean_batch(
    batch: Iterable[Article], *, quiet: bool = False
) -> tuple[list[Article], list[Rejection]]:
    """Cleaned articles, one per id (the last record of an id wins), and the rejected records."""
    kept: dict[str, Article] = {}
    rejected: list[Rejection] = []
    for article in batch:
        result = clean_article(article)
        if isinstance(result, Rejection):
            if not quiet:
                log.warning("rejected %s: %s", result.where, result.reason)
            rejected.append(result)
        else:
            # A later record of the same id corrects the earlier one; keep its position.
            kept[result.id] = result
    return list(kept.values()), rejected


def _chat_update(chat: ChatRef) -> sa.Update:
    return subscriptions.update().where(
        subscriptions.c.platform == chat.platform,
        subscriptions.c.chat_id == chat.chat_id,
        subscriptions.c.thread_id == (chat.thread_id or ""),
    )


def _insert_ignore(conn: AsyncConnection, table: sa.Table) -> Any:
    """INSERT that skips rows violating a unique constraint, in this connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read while the service writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _article_row(article: Article, digest: str, seen_at: datetime) -> dict[str, Any]:
    return {
        "id": article.id,
        "content_hash": digest,
        "title": article.title,
        "text": article.text,
        "lang": article.lang,
        "published": article.published,
        "place": article.place,
        "agency": article.agency,
        "url": article.url,
        "source": article.source,
        "seen_at": seen_at,
    }


def _article(row: Any) -> Article:
    return Article(
        id=row["id"],
        title=row["title"],
        text=row["text"],
        lang=row["lang"],
        published=row["published"],
        place=row["place"],
        agency=row["agency"],
        url=row["url"],
        source=row["source"],
    )


def _verdict(row: Any) -> Verdict:
    return Verdict(
        article_id=row["article_id"],
        conflict=bool(row["conflict"]),
        score=float(row["score"]),
        reasons=tuple(json.loads(row["reasons"])),
        level=Level(row["level"]),
        topics=tuple(json.loads(row["topics"])),
    )


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row["id"],
        chat=ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None),
        active=bool(row["active"]),
        lang=row["lang"],
        prefs=preferences_from_json(row["settings"]),
        last_digest_at=_aware(row["last_digest_at"]),
        created_at=_aware(row["created_at"]) or _now(),
    )


def preferences_to_json(prefs: Preferences) -> str:
    """Preferences as stored."""
    return json.dumps(dataclasses.asdict(prefs), ensure_ascii=False)


def preferences_from_json(raw: str | None) -> Preferences:
    """Stored preferences; unknown keys (from newer versions) are ignored, missing ones default."""
    data = json.loads(raw or "{}")
    known = {f.name for f in dataclasses.fields(Preferences)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
    }
    return Preferences(**values)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        chat=ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None),
        kind=row["kind"],
        key=row["key"],
        payload=json.loads(row["payload"] or "{}"),
        attempts=row["attempts"],
        created_at=_aware(row["created_at"]) or _now(),
        parts_sent=row["parts_sent"] or 0,
        message_ids=tuple(json.loads(row["message_ids"] or "[]")),
    )


def _source(row: Any) -> FeedSource:
    return FeedSource(
        id=row["id"],
        url=row["url"],
        name=row["name"],
        added_by=row["added_by"],
        interval_seconds=row["interval_seconds"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        failures=row["failures"],
        last_error=row["last_error"],
        next_attempt_at=_aware(row["next_attempt_at"]),
        last_fetched_at=_aware(row["last_fetched_at"]),
    )
