"""The tables of newsbot's database and the ordered MIGRATIONS that build and upgrade them."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot import ratelimit, search
from bot.db import UTCDateTime
from bot.fetch import canonical_url

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
    # Whether its alerts were owed (false from the verdict's commit until the ledger's): a kill
    # or failure in between leaves it false, and the routing sweep owes them after all. Rows
    # inserted without it (older exports) count as routed: nothing old is alerted after an import.
    sa.Column("routed", sa.Boolean, nullable=False, server_default=sa.true(), index=True),
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
    # "config": public (newsbot.toml lists it, or did last); else one chat owning it. Who owns
    # a feed is `source_owners`; this column says whether its articles reach every subscriber.
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


# Who owns each feed: chats ("telegram:-100…") and/or "config" (newsbot.toml lists it). A feed
# is polled while it has an owner; a chat-owned-only feed's articles reach only its owners.
source_owners = sa.Table(
    "source_owners",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "source_id",
        sa.Integer,
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("owner", sa.String(120), nullable=False),
    sa.UniqueConstraint("source_id", "owner"),
)


# Every source that carried an article's content (articles are stored once per content hash):
# its audience is theirs together — every subscriber once any public source (the folder, a
# config feed; "" for none) carried it, else the owners of each chat feed that did.
article_sources = sa.Table(
    "article_sources",
    metadata,
    sa.Column(
        "article_id",
        sa.String(200),
        sa.ForeignKey("articles.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("source", sa.Text, primary_key=True),
    # When this source first carried it: the routing sweep's window counts from the latest.
    sa.Column("seen_at", UTCDateTime(), nullable=False),
)


# What retention pruning deleted: a feed that still lists a pruned story must not make it new.
tombstones = sa.Table(
    "tombstones",
    metadata,
    sa.Column("article_id", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, index=True),
    sa.Column("pruned_at", UTCDateTime(), nullable=False),
)


# The story of each text a deleted (or renamed) file took out of the store: the same text
# stored again, under any name or from any source, joins that story, so the ledger's alert key
# is the one its chats were already owed (no tombstone: the text may be stored again).
forgotten_stories = sa.Table(
    "forgotten_stories",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("story_id", sa.String(200), nullable=False),
    sa.Column("forgotten_at", UTCDateTime(), nullable=False, index=True),
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


def _v6_claim_indexes(conn: Connection) -> None:
    """Indexes that keep claiming due deliveries cheap however long the backlog is."""
    for index in deliveries.indexes:
        index.create(conn, checkfirst=True)


def own_feeds(conn: Connection) -> None:
    """Feeds owned by several chats and/or the config (`source_owners`, from `added_by`), and
    feed URLs in canonical form, so that `HTTP://h/x?` and `http://h/x` are one feed."""
    rows = conn.execute(sa.select(sources.c.id, sources.c.url).order_by(sources.c.id)).all()
    taken = {url for _, url in rows}
    for source_id, url in rows:
        canonical = canonical_url(url)
        # Two old rows for one feed stay apart (merging their states is not worth the risk);
        # the articles move along so that a chat's own feed keeps its articles private.
        if canonical != url and canonical not in taken:
            taken.add(canonical)
            conn.execute(sources.update().where(sources.c.id == source_id).values(url=canonical))
            conn.execute(articles.update().where(articles.c.source == url).values(source=canonical))
    metadata.create_all(conn, tables=[source_owners])
    for index in source_owners.indexes:
        index.create(conn, checkfirst=True)
    # Only feeds with no owner row yet: a re-run must not give back a share someone gave up.
    # (An import of an older export runs this step too: its feeds come without owner rows.)
    unowned = ~sa.exists().where(source_owners.c.source_id == sources.c.id)
    conn.execute(
        source_owners.insert().from_select(
            ["source_id", "owner"],
            sa.select(sources.c.id, sources.c.added_by).where(sources.c.active.is_(True), unowned),
        )
    )


def _v8_routed_verdicts(conn: Connection) -> None:
    """The `routed` mark of each verdict; what an older version stored counts as routed."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(verdicts.name)}
    if "routed" not in present:
        # The default fills existing rows: they were routed then, or lost for good (not news now).
        conn.execute(
            sa.text("ALTER TABLE verdicts ADD COLUMN routed BOOLEAN NOT NULL DEFAULT TRUE")
        )
    for index in verdicts.indexes:
        index.create(conn, checkfirst=True)


def link_article_sources(conn: Connection) -> None:
    """`article_sources`, with each stored article's own source where it has no link yet.

    (An import of an older export runs this step too: its articles come without links.)"""
    metadata.create_all(conn, tables=[article_sources])
    unlinked = ~sa.exists().where(article_sources.c.article_id == articles.c.id)
    conn.execute(
        article_sources.insert().from_select(
            ["article_id", "source", "seen_at"],
            sa.select(
                articles.c.id, sa.func.coalesce(articles.c.source, ""), articles.c.seen_at
            ).where(unlinked),
        )
    )


# A source in the form of step 11 (`host:/path`), or a feed's URL: left as it is.
_KEYED = re.compile(r"\A[^/]*:/")


def key_folder_sources(conn: Connection) -> None:
    """Folder files' sources as `host:/resolved/path`, so that a folder sweeps only its own.

    They were stored as the path the folder was configured with (`articles/a.txt`), so the
    folder of another working directory or instance swept them as its own. A path is taken
    to be this host's and, when relative, this working directory's: where `newsbot migrate`
    (or the instance's `run`) runs. (An import of an older export runs this step too.)"""
    host = socket.gethostname()
    found: set[str] = set()
    for column in (articles.c.source, article_sources.c.source):
        query = sa.select(column).where(column.contains("/"), ~column.contains("://")).distinct()
        found.update(source for source in conn.execute(query).scalars() if source)
    moves = {}
    for source in sorted(found):
        if _KEYED.match(source):
            continue  # already keyed: a re-run changes nothing
        path = Path(os.path.abspath(source))
        # The folder is resolved (symlinks) as bot.articles.folder_key resolves it.
        moves[source] = f"{host}:{str(path.parent.resolve()).rstrip('/')}/{path.name}"
    if not moves:
        return
    table = sa.Table(
        "source_moves",
        sa.MetaData(),
        sa.Column("old", sa.Text, primary_key=True),
        sa.Column("new", sa.Text, nullable=False),
    )
    table.create(conn)
    try:
        rows = [{"old": old, "new": new} for old, new in moves.items()]
        for start in range(0, len(rows), 500):
            conn.execute(table.insert(), rows[start : start + 500])
        # One statement per table, not one per file: `source` has no index to find a file by.
        for target in (articles, article_sources):
            new = sa.select(table.c.new).where(table.c.old == target.c.source).scalar_subquery()
            conn.execute(
                target.update()
                .where(target.c.source.in_(sa.select(table.c.old)))
                .values(source=new)
            )
    finally:
        table.drop(conn)


def _v12_forgotten_stories(conn: Connection) -> None:
    """The stories of the texts whose files were deleted or renamed."""
    metadata.create_all(conn, tables=[forgotten_stories])
    for index in forgotten_stories.indexes:
        index.create(conn, checkfirst=True)


# Ordered schema upgrades; version N is MIGRATIONS[N-1]. Never edit a shipped step: append one.
# Steps must be idempotent (check before altering), because migration 1 creates the tables from
# the live `metadata`, which already has the columns that later steps add to old databases.
MIGRATIONS: list[Callable[[Connection], None]] = [
    _create_v1,
    _v2_pipeline,
    _v3_delivery_core,
    search.create_schema,
    ratelimit.create_schema,
    _v6_claim_indexes,
    own_feeds,
    _v8_routed_verdicts,
    link_article_sources,
    ratelimit.book_when_ready,
    key_folder_sources,
    _v12_forgotten_stories,
]
