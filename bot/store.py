"""The database: articles, verdicts, subscriptions, deliveries and feedback over SQLAlchemy Core.

SQLite (default, one file) and PostgreSQL share this code; callers never see SQL. The schema is
versioned in `schema_version` and upgraded in place by the ordered MIGRATIONS, so an upgrade never
loses data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.models import Article, ChatRef, Level, Verdict

log = logging.getLogger(__name__)

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, index=True),
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
    sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("chat_id", sa.String(100), nullable=False),
    # '' rather than NULL: NULLs never collide in a UNIQUE constraint, so a chat could subscribe twice.
    sa.Column("thread_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("lang", sa.String(8), nullable=False, server_default="en"),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_digest_at", sa.DateTime(timezone=True)),
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("message_ids", sa.Text),
    sa.UniqueConstraint("platform", "chat_id", "thread_id", "kind", "key"),
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("article_id", "platform", "chat_id", "user_id"),
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[articles, verdicts, subscriptions, deliveries, feedback])


# Ordered schema upgrades; version N is MIGRATIONS[N-1]. Never edit a shipped step: append one.
# Steps must be idempotent (check before altering), because migration 1 creates the tables from
# the live `metadata`, which already has the columns that later steps add to old databases.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1]


@dataclass(frozen=True, slots=True)
class IngestCounts:
    """What adding a batch of articles did."""

    new: int = 0
    updated: int = 0
    duplicate: int = 0

    def __add__(self, other: IngestCounts) -> IngestCounts:
        return IngestCounts(
            self.new + other.new, self.updated + other.updated, self.duplicate + other.duplicate
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A chat that receives alerts and digests."""

    id: int
    chat: ChatRef
    active: bool
    lang: str
    settings: dict[str, Any]
    last_digest_at: datetime | None


def normalise_url(url: str) -> str:
    """Pick the async driver for plain `sqlite:///` and `postgresql://` URLs."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


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
        engine = create_async_engine(url)
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
            for version in range(current + 1, len(MIGRATIONS) + 1):
                log.info("upgrading database schema to version %d", version)
                await conn.run_sync(MIGRATIONS[version - 1])
                await conn.execute(
                    schema_version.insert().values(version=version, applied_at=_now())
                )
            return max(current, len(MIGRATIONS))

    # --- articles -------------------------------------------------------------------------

    async def add_articles(
        self, batch: Iterable[Article], seen_at: datetime | None = None
    ) -> tuple[IngestCounts, list[Article]]:
        """Store articles; return counts and the articles that are new or changed (to classify)."""
        from bot.articles import content_hash

        seen_at = seen_at or _now()
        counts = IngestCounts()
        changed: list[Article] = []
        items = list(batch)
        async with self.engine.begin() as conn:
            for start in range(0, len(items), 500):
                chunk = items[start : start + 500]
                c, ch = await self._add_chunk(conn, chunk, seen_at, content_hash)
                counts += c
                changed += ch
        return counts, changed

    async def _add_chunk(
        self,
        conn: AsyncConnection,
        chunk: Sequence[Article],
        seen_at: datetime,
        hasher: Callable[[str, str], str],
    ) -> tuple[IngestCounts, list[Article]]:
        hashes = {a.id: hasher(a.title, a.text) for a in chunk}
        by_id = dict(
            (
                await conn.execute(
                    sa.select(articles.c.id, articles.c.content_hash).where(
                        articles.c.id.in_(list(hashes))
                    )
                )
            ).all()
        )
        known_hashes = set(
            (
                await conn.execute(
                    sa.select(articles.c.content_hash).where(
                        articles.c.content_hash.in_(list(hashes.values()))
                    )
                )
            ).scalars()
        )
        new_rows: list[dict[str, Any]] = []
        changed: list[Article] = []
        updated = duplicate = 0
        for article in chunk:
            digest = hashes[article.id]
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
        return IngestCounts(len(new_rows), updated, duplicate), changed

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
        rows = [
            {
                "article_id": v.article_id,
                "conflict": v.conflict,
                "score": v.score,
                "level": v.level.value,
                "reasons": json.dumps(list(v.reasons), ensure_ascii=False),
                "topics": json.dumps(list(v.topics), ensure_ascii=False),
                "classified_at": at or _now(),
            }
            for v in batch
        ]
        if not rows:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                verdicts.delete().where(verdicts.c.article_id.in_([r["article_id"] for r in rows]))
            )
            await conn.execute(verdicts.insert(), rows)

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

    async def subscribe(self, chat: ChatRef, lang: str) -> bool:
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
        """Deactivate a chat's subscription (kept for its settings); True when it was active."""
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
            return bool(result.rowcount)

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
        settings=json.loads(row["settings"] or "{}"),
        last_digest_at=_aware(row["last_digest_at"]),
    )
