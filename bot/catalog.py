"""Articles, their verdicts, stories and feedback: what newsbot knows, over SQLAlchemy Core."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import search
from bot.articles import Rejection, content_hash
from bot.db import UTCDateTime, aware, insert_ignore, upsert, utcnow
from bot.models import Article, ChatRef, Level, Verdict
from bot.schema import (
    article_sources,
    articles,
    feedback,
    forgotten_stories,
    tombstones,
    verdicts,
)
from bot.sources import private_urls

log = logging.getLogger(__name__)


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


class Catalog:
    """Stored articles with their verdicts, stories and users' feedback."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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
        seen_at = seen_at or utcnow()
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
                hashes = [content_hash(a.title, a.text) for a in chunk]
                _, known_hashes = await _known(conn, chunk, hashes)
                for article, digest in zip(chunk, hashes, strict=True):
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
        # Hashed once: normalising and hashing every text twice cost 0.1 s per 10,000 entries.
        hashes = [content_hash(a.title, a.text) for a in chunk]
        by_id, known_hashes = await _known(conn, chunk, hashes)
        new_rows: list[dict[str, Any]] = []
        changed: list[Article] = []
        # The same content from another source: linked to the stored article below.
        carried: list[tuple[str, str]] = []
        updated = duplicate = 0
        for article, digest in zip(chunk, hashes, strict=True):
            if digest in known_hashes:
                duplicate += 1
                carried.append((digest, article.source or ""))
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
            await _rejoin_stories(conn, new_rows)
            await conn.execute(articles.insert(), new_rows)
            # A pruned article that comes back changed is stored again: its tombstone goes.
            await conn.execute(
                tombstones.delete().where(tombstones.c.article_id.in_([r["id"] for r in new_rows]))
            )
        links = {(article.id, article.source or "") for article in changed}
        if links:
            rows = [{"article_id": a, "source": s, "seen_at": seen_at} for a, s in sorted(links)]
            await conn.execute(insert_ignore(conn, article_sources), rows)
        if carried:
            await _widen(conn, carried, seen_at)
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
            return [article_from_row(r._mapping) for r in await conn.execute(query)]

    async def unrouted(self, since: datetime, limit: int = 500) -> list[tuple[Article, Verdict]]:
        """Articles seen after `since` whose verdict was never routed, oldest first."""
        query = (
            sa.select(articles, verdicts)
            .join(verdicts, verdicts.c.article_id == articles.c.id)
            .where(
                verdicts.c.routed.is_(False),
                # Seen lately from any source (a public source carrying it widens its audience).
                sa.or_(
                    articles.c.seen_at > since,
                    sa.exists().where(
                        article_sources.c.article_id == articles.c.id,
                        article_sources.c.seen_at > since,
                    ),
                ),
            )
            .order_by(articles.c.seen_at, articles.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [
                (article_from_row(r._mapping), _verdict(r._mapping))
                for r in await conn.execute(query)
            ]

    async def get_article(self, article_id: str) -> Article | None:
        """One article by id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(articles).where(articles.c.id == article_id))
            ).first()
        return article_from_row(row._mapping) if row else None

    async def all_articles(self) -> list[Article]:
        """Every stored article, newest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(articles).order_by(articles.c.seen_at.desc()))
            return [article_from_row(r._mapping) for r in rows]

    async def count_articles(self) -> int:
        """How many articles are stored."""
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(articles))).scalar() or 0
            )

    async def save_verdicts(self, batch: Iterable[Verdict], at: datetime | None = None) -> None:
        """Store (or replace) classifier verdicts."""
        rows = [_verdict_row(v, at or utcnow()) for v in batch]
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
        self,
        min_score: float,
        since: datetime | None = None,
        limit: int = 200,
        *,
        visible_to: str | None = None,
    ) -> list[tuple[Article, Verdict, datetime]]:
        """Articles scoring at least `min_score` seen after `since`, best first, with when seen.

        `visible_to` (an owner, "platform:chat_id"; "" for no chat): leave out the articles of
        chat-added feeds it does not own. None: every article.
        """
        query = (
            sa.select(articles, verdicts)
            .join(verdicts, verdicts.c.article_id == articles.c.id)
            .where(verdicts.c.score >= min_score)
            .order_by(verdicts.c.score.desc(), articles.c.seen_at.desc())
            .limit(limit)
        )
        if visible_to is not None:
            query = query.where(visible(visible_to))
        if since is not None:
            query = query.where(articles.c.seen_at > since)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                (
                    article_from_row(r._mapping),
                    _verdict(r._mapping),
                    aware(r._mapping["seen_at"]) or utcnow(),
                )
                for r in rows
            ]

    async def sources_of(self, article_ids: Sequence[str]) -> dict[str, set[str]]:
        """Every source that carried each article ("" for none), its own included."""
        found: dict[str, set[str]] = {}
        ids = list(dict.fromkeys(article_ids))
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = sa.select(articles.c.id, articles.c.source).where(articles.c.id.in_(chunk))
                for article_id, source in await conn.execute(query):
                    found.setdefault(article_id, set()).add(source or "")
                query = sa.select(article_sources.c.article_id, article_sources.c.source).where(
                    article_sources.c.article_id.in_(chunk)
                )
                for article_id, source in await conn.execute(query):
                    found.setdefault(article_id, set()).add(source)
        return found

    async def shown_despite_source(self, viewer: str) -> frozenset[str]:
        """Articles whose own source is another chat's feed but which `viewer` may see anyway
        (a public source, or one of its own feeds, carried them too)."""
        query = sa.select(articles.c.id).where(
            articles.c.source.in_(private_urls(viewer or None)), visible(viewer)
        )
        async with self.engine.connect() as conn:
            return frozenset((await conn.execute(query)).scalars())

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
                    article_from_row(r._mapping),
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
        ids = list(dict.fromkeys(article_ids))
        found: dict[str, str] = {}
        async with self.engine.connect() as conn:
            # In chunks: PostgreSQL takes at most 32,767 parameters per statement (routing a
            # feed document of 100,000 entries failed here).
            for start in range(0, len(ids), 500):
                query = sa.select(articles.c.id, articles.c.story_id).where(
                    articles.c.id.in_(ids[start : start + 500])
                )
                found.update((r.id, r.story_id or r.id) for r in await conn.execute(query))
        return found

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
                result.setdefault(row._mapping["story_id"], []).append(
                    article_from_row(row._mapping)
                )
        return result

    async def seen_at(self, article_ids: Sequence[str]) -> dict[str, datetime]:
        """When each article first appeared."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(articles.c.id, articles.c.seen_at).where(
                    articles.c.id.in_(list(article_ids))
                )
            )
            return {r.id: aware(r.seen_at) or utcnow() for r in rows}

    async def entries(self, article_ids: Sequence[str]) -> list[tuple[Article, Verdict]]:
        """Articles with their verdicts, in the order of `article_ids` (missing ones left out)."""
        query = (
            sa.select(articles, verdicts)
            .join(verdicts, verdicts.c.article_id == articles.c.id)
            .where(articles.c.id.in_(list(article_ids)))
        )
        async with self.engine.connect() as conn:
            found = {
                r._mapping["id"]: (article_from_row(r._mapping), _verdict(r._mapping))
                for r in await conn.execute(query)
            }
        return [found[i] for i in article_ids if i in found]

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
                    created_at=utcnow(),
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
            return [(article_from_row(r._mapping), float(r._mapping["share"]) >= 0.5) for r in rows]

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
                    "created_at": utcnow(),
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
                    "at": (aware(r.created_at) or utcnow()).isoformat(),
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

    async def file_sources(self, prefix: str) -> list[str]:
        """The distinct sources of stored articles that start with `prefix` (a folder's files)."""
        # substr, not LIKE: a path may hold `%` or `_`. Filtered in the database: the store's
        # other sources (feeds, other folders) are not loaded.
        own = sa.func.substr(articles.c.source, 1, len(prefix)) == prefix
        query = sa.select(articles.c.source).where(own).distinct()
        # Also files whose text another source had brought first (linked, not the article's own).
        linked = sa.select(article_sources.c.source).where(
            sa.func.substr(article_sources.c.source, 1, len(prefix)) == prefix
        )
        async with self.engine.connect() as conn:
            found = set((await conn.execute(query)).scalars())
            found.update((await conn.execute(linked.distinct())).scalars())
            return sorted(found)

    async def forget_source(self, source: str) -> int:
        """Delete the articles read from `source` (a deleted file) with their verdicts, feedback
        and index rows; return how many. No tombstone: the file may come back — and its text,
        under this name or another (a renamed file), rejoins its story: no second alert."""
        async with self.engine.begin() as conn:
            remembered = sa.select(
                articles.c.content_hash, sa.func.coalesce(articles.c.story_id, articles.c.id)
            ).where(articles.c.source == source)
            stories = [
                {"content_hash": digest, "story_id": story, "forgotten_at": utcnow()}
                for digest, story in await conn.execute(remembered)
            ]
            for start in range(0, len(stories), 500):
                chunk = stories[start : start + 500]
                await conn.execute(
                    forgotten_stories.delete().where(
                        forgotten_stories.c.content_hash.in_([r["content_hash"] for r in chunk])
                    )
                )
                await conn.execute(forgotten_stories.insert(), chunk)
            # Articles another source carried first stay, but the file no longer vouches for
            # them: their audience is the other sources' again.
            await conn.execute(article_sources.delete().where(article_sources.c.source == source))
            ids = sa.select(articles.c.id).where(articles.c.source == source)
            await conn.execute(verdicts.delete().where(verdicts.c.article_id.in_(ids)))
            await conn.execute(feedback.delete().where(feedback.c.article_id.in_(ids)))
            await conn.execute(
                article_sources.delete().where(article_sources.c.article_id.in_(ids))
            )
            await conn.run_sync(search.forget, ids)
            gone = await conn.execute(articles.delete().where(articles.c.source == source))
            return int(gone.rowcount)

    async def prune(self, before: datetime) -> int:
        """Delete articles first seen before `before` (with their verdicts); return how many."""
        async with self.engine.begin() as conn:
            old = sa.select(articles.c.id).where(articles.c.seen_at < before)
            # Remember what goes, so a feed that still lists it does not make it new again.
            await conn.execute(tombstones.delete().where(tombstones.c.article_id.in_(old)))
            await conn.execute(
                tombstones.insert().from_select(
                    ["article_id", "content_hash", "pruned_at"],
                    sa.select(
                        articles.c.id, articles.c.content_hash, sa.literal(utcnow(), UTCDateTime())
                    ).where(articles.c.seen_at < before),
                )
            )
            await conn.execute(verdicts.delete().where(verdicts.c.article_id.in_(old)))
            await conn.execute(feedback.delete().where(feedback.c.article_id.in_(old)))
            await conn.execute(
                article_sources.delete().where(article_sources.c.article_id.in_(old))
            )
            await conn.run_sync(search.forget, old)
            # A deleted file's text older than retention is as old as a pruned story.
            await conn.execute(
                forgotten_stories.delete().where(forgotten_stories.c.forgotten_at < before)
            )
            gone = await conn.execute(articles.delete().where(articles.c.seen_at < before))
            return int(gone.rowcount)


def visible(viewer: str) -> sa.ColumnElement[bool]:
    """Whether an article is for `viewer` (an owner; "" for no chat): some source that carried
    it is public or one of the viewer's own feeds."""
    hidden = private_urls(viewer or None)
    return sa.or_(
        articles.c.source.is_(None),
        articles.c.source.not_in(hidden),
        sa.exists().where(
            article_sources.c.article_id == articles.c.id, article_sources.c.source.not_in(hidden)
        ),
    )


async def _known(
    conn: AsyncConnection, chunk: Sequence[Article], hashes: Sequence[str]
) -> tuple[dict[str, str], set[str]]:
    """Stored hashes by id for the chunk's ids, and which of its `hashes` (its articles'
    content hashes) are known (or pruned)."""
    ids = [a.id for a in chunk]
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


async def _rejoin_stories(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Put new rows whose text a deleted or renamed file took out back into its story."""
    hashes = [row["content_hash"] for row in rows]
    found = dict(
        (
            await conn.execute(
                sa.select(forgotten_stories.c.content_hash, forgotten_stories.c.story_id).where(
                    forgotten_stories.c.content_hash.in_(hashes)
                )
            )
        ).all()
    )
    if not found:
        return
    for row in rows:
        story = found.get(row["content_hash"])
        # Its own id again (the file came back under its name): NULL says that already. Every
        # row gets the key: one multi-row insert needs the same columns in each.
        row["story_id"] = story if story != row["id"] else None
    # The story lives on in the stored article now.
    await conn.execute(
        forgotten_stories.delete().where(forgotten_stories.c.content_hash.in_(list(found)))
    )


async def _widen(
    conn: AsyncConnection, carried: Sequence[tuple[str, str]], seen_at: datetime
) -> None:
    """Link stored articles to the further sources that carried their content (hash, source).

    An article no public source had carried before is routed again (its verdict unrouted, in
    this transaction): the chats the new source reaches are owed its alert; those owed it
    already are not, the ledger's keys see to that. A pruned article's content stays pruned.
    """
    hashes = sorted({digest for digest, _ in carried})
    stored = dict(
        (
            await conn.execute(
                sa.select(articles.c.content_hash, articles.c.id).where(
                    articles.c.content_hash.in_(hashes)
                )
            )
        ).all()
    )
    wanted = {(stored[digest], source) for digest, source in carried if digest in stored}
    if not wanted:
        return
    ids = sorted({article_id for article_id, _ in wanted})
    links = sa.select(article_sources.c.article_id, article_sources.c.source).where(
        article_sources.c.article_id.in_(ids)
    )
    known = {(r.article_id, r.source) for r in await conn.execute(links)}
    fresh = sorted(wanted - known)
    if not fresh:
        return  # the usual case: a feed listing again what it listed before
    public = {
        r.article_id
        for r in await conn.execute(
            links.where(article_sources.c.source.not_in(private_urls(None)))
        )
    }
    rows = [{"article_id": a, "source": s, "seen_at": seen_at} for a, s in fresh]
    await conn.execute(insert_ignore(conn, article_sources), rows)
    widened = sorted({article_id for article_id, _ in fresh if article_id not in public})
    if widened:
        await conn.execute(
            verdicts.update().where(verdicts.c.article_id.in_(widened)).values(routed=False)
        )


def _verdict_row(verdict: Verdict, at: datetime) -> dict[str, Any]:
    return {
        "article_id": verdict.article_id,
        "conflict": verdict.conflict,
        "score": verdict.score,
        "level": verdict.level.value,
        "reasons": json.dumps(list(verdict.reasons), ensure_ascii=False),
        "topics": json.dumps(list(verdict.topics), ensure_ascii=False),
        "classified_at": at,
        # Owed to nobody yet: routing marks it in the transaction that owes its alerts.
        "routed": False,
    }


async def _replace_verdicts(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    # In chunks: PostgreSQL takes at most 32,767 parameters per statement (100,000 verdicts
    # of one feed document failed at once). One upsert, not a delete and an insert: on
    # PostgreSQL the per-chunk DELETE ... IN grew with the table (save_verdicts of 100,000
    # took 13.9 s against 1.0 s for 30,000).
    statement = upsert(conn, verdicts)
    for start in range(0, len(rows), 500):
        await conn.execute(statement, list(rows[start : start + 500]))


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


_ARTICLE_FIELDS = tuple(f.name for f in dataclasses.fields(Article))


def clean_article(article: Article) -> Article | Rejection:
    """The article as the database can store it, or why it can't be stored."""
    given = {name: getattr(article, name) for name in _ARTICLE_FIELDS}
    fields = {
        name: _clean_text(value) if isinstance(value, str) else value
        for name, value in given.items()
    }
    fields["published"] = _clean_published(fields["published"])
    where = f"article {fields['id'][:80]!r}"
    if not fields["id"].strip():
        return Rejection(where, "id: empty")
    if len(fields["id"]) > ID_MAX:
        return Rejection(where, f"id: {len(fields['id'])} characters, at most {ID_MAX}")
    if len(fields["lang"]) > LANG_MAX:
        return Rejection(where, f"lang: {fields['lang'][:20]!r} is not a language code")
    # Nearly every article is clean already: the same (immutable) object, not a copy of it.
    return article if fields == given else Article(**fields)


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


def article_from_row(row: Any) -> Article:
    """An article from a row of the articles table."""
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
