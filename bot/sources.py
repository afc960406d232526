"""The feeds newsbot polls, who owns each (chats and/or the config file), and their fetch state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db import aware, insert_ignore, utcnow
from bot.fetch import FeedState, canonical_url
from bot.models import ChatRef
from bot.schema import source_owners, sources

# The owner of the feeds newsbot.toml lists; a chat owner is "platform:chat_id".
CONFIG = "config"


def owner_of(chat: ChatRef) -> str:
    """The owner string of a chat: "platform:chat_id" (all threads of a chat own alike)."""
    return f"{chat.platform}:{chat.chat_id}"


def chat_of(owner: str) -> ChatRef:
    """The chat an owner string names (the inverse of `owner_of`)."""
    platform, _, chat_id = owner.partition(":")
    return ChatRef(platform, chat_id)


@dataclass(frozen=True, slots=True)
class FeedSource:
    """A feed newsbot polls: who owns it, how often, and its fetch state between polls."""

    id: int
    name: str
    # CONFIG while the config file lists it (or did last, when nobody owns it any more), else
    # one of the chats that own it: what `public` reads, and what `newsbot status` shows.
    added_by: str
    interval_seconds: int
    # The fetcher's own record (URL, HTTP cache validators, errors, back-off), stored as is.
    state: FeedState
    owners: frozenset[str] = field(default=frozenset())

    @property
    def url(self) -> str:
        """The feed's address."""
        return self.state.url

    @property
    def public(self) -> bool:
        """Whether its articles reach every subscriber (a config feed), not just its owners."""
        return self.added_by == CONFIG or CONFIG in self.owners

    def audience(self) -> frozenset[ChatRef] | None:
        """The chats its articles are for: None for everyone, else the chats that own it."""
        if self.public:
            return None
        return frozenset(chat_of(owner) for owner in self.owners)


def private_urls(viewer: str | None) -> sa.Select[Any]:
    """URLs of chat-added feeds that `viewer` does not own (all of them for None)."""
    query = sa.select(sources.c.url).where(sources.c.added_by != CONFIG)
    if viewer is not None:
        query = query.where(
            ~sa.exists().where(
                source_owners.c.source_id == sources.c.id, source_owners.c.owner == viewer
            )
        )
    return query


class Sources:
    """Feeds to poll: owned by the config or by chats, given up by owners, and fetch state."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self, url: str, *, name: str = "", added_by: str = CONFIG, interval_seconds: int = 600
    ) -> bool:
        """Make `added_by` an owner of a feed (adding or re-activating it); False if it was one."""
        url = canonical_url(url)
        async with self.engine.begin() as conn:
            row = await _find(conn, url)
            if row is None:
                result = await conn.execute(
                    sources.insert().values(
                        url=url,
                        name=name,
                        added_by=added_by,
                        interval_seconds=interval_seconds,
                        created_at=utcnow(),
                    )
                )
                primary = result.inserted_primary_key
                assert primary is not None
                source_id = int(primary[0])
            else:
                source_id = row.id
                values: dict[str, Any] = {"active": True, "name": name or row.name}
                # A removed feed belongs to whoever adds it again; the config file sets the
                # interval and makes public what it lists.
                if not row.active or added_by == CONFIG:
                    values.update(added_by=added_by, interval_seconds=interval_seconds)
                await conn.execute(sources.update().where(sources.c.id == row.id).values(**values))
            result = await conn.execute(
                insert_ignore(conn, source_owners).values(source_id=source_id, owner=added_by)
            )
            return bool(result.rowcount) or (row is not None and not row.active)

    async def remove(self, source: int | str, *, owner: str | None = None) -> bool:
        """Give up `owner`'s share of a feed (by id or URL), or all (None); its articles stay.

        The feed stops being polled when no owner is left. False when there was nothing to give.
        """
        async with self.engine.begin() as conn:
            if isinstance(source, int):
                query = sa.select(sources).where(sources.c.id == source)
                row = (await conn.execute(query)).first()
            else:
                row = await _find(conn, canonical_url(source))
            if row is None or not row.active:
                return False
            gone = source_owners.delete().where(source_owners.c.source_id == row.id)
            if owner is not None:
                gone = gone.where(source_owners.c.owner == owner)
            if not (await conn.execute(gone)).rowcount and owner is not None:
                return False
            left = sorted(
                (
                    await conn.execute(
                        sa.select(source_owners.c.owner).where(source_owners.c.source_id == row.id)
                    )
                ).scalars()
            )
            if not left:
                # Nobody owns it: no more polls. `added_by` stays, so a feed the config gave up
                # keeps its articles public and a chat's feed keeps them private.
                values: dict[str, Any] = {"active": False}
            else:
                values = {"added_by": CONFIG if CONFIG in left else left[0]}
            await conn.execute(sources.update().where(sources.c.id == row.id).values(**values))
            return True

    async def get(self, source_id: int) -> FeedSource | None:
        """One feed by id (active or not)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sources).where(sources.c.id == source_id))).first()
            if row is None:
                return None
            return _source(row._mapping, (await _owners(conn, [source_id]))[source_id])

    async def find(self, url: str) -> FeedSource | None:
        """The feed at a URL, compared in canonical form (active or not)."""
        async with self.engine.connect() as conn:
            row = await _find(conn, canonical_url(url))
            if row is None:
                return None
            return _source(row._mapping, (await _owners(conn, [row.id]))[row.id])

    async def active(self) -> list[FeedSource]:
        """Active feeds, with their owners."""
        query = sa.select(sources).where(sources.c.active.is_(True)).order_by(sources.c.id)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(query))
            owners = await _owners(conn, None)
        return [_source(r._mapping, owners[r.id]) for r in rows]

    async def hidden_from(self, owner: str) -> frozenset[str]:
        """URLs of the chat-added feeds `owner` does not own: their articles are not for it."""
        async with self.engine.connect() as conn:
            return frozenset((await conn.execute(private_urls(owner))).scalars())

    async def private_owners(self, urls: Iterable[str]) -> dict[str, frozenset[str]]:
        """The chat-added feeds among `urls`, each with its owners (any other URL is public)."""
        wanted = sorted(set(urls))
        found: dict[str, frozenset[str]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(sources.c.id, sources.c.url).where(
                    sources.c.url.in_(wanted[start : start + 500]), sources.c.added_by != CONFIG
                )
                rows = list(await conn.execute(query))
                owners = await _owners(conn, [row.id for row in rows])
                found.update((row.url, owners[row.id]) for row in rows)
        return found

    async def owned_by(self, owner: str) -> list[FeedSource]:
        """Active feeds `owner` is one of the owners of."""
        return [feed for feed in await self.active() if owner in feed.owners]

    async def save_state(self, source: FeedSource) -> None:
        """Persist a feed's validators and error state after a fetch."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sources.update()
                .where(sources.c.id == source.id)
                .values(
                    etag=source.state.etag,
                    last_modified=source.state.last_modified,
                    failures=source.state.failures,
                    last_error=source.state.last_error,
                    next_attempt_at=source.state.next_attempt,
                    last_fetched_at=source.state.last_fetched,
                )
            )


async def _find(conn: AsyncConnection, url: str) -> Any:
    # Stored URLs are canonical (schema step 7 rewrote older ones): equal strings, same feed.
    return (await conn.execute(sa.select(sources).where(sources.c.url == url))).first()


async def _owners(
    conn: AsyncConnection, source_ids: Iterable[int] | None
) -> defaultdict[int, frozenset[str]]:
    query = sa.select(source_owners.c.source_id, source_owners.c.owner)
    if source_ids is not None:
        query = query.where(source_owners.c.source_id.in_(list(source_ids)))
    found: defaultdict[int, set[str]] = defaultdict(set)
    for source_id, owner in await conn.execute(query):
        found[source_id].add(owner)
    return defaultdict(frozenset, {k: frozenset(v) for k, v in found.items()})


def _source(row: Any, owners: frozenset[str]) -> FeedSource:
    return FeedSource(
        id=row["id"],
        name=row["name"],
        added_by=row["added_by"],
        interval_seconds=row["interval_seconds"],
        owners=owners,
        state=FeedState(
            url=row["url"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            failures=row["failures"],
            last_error=row["last_error"],
            next_attempt=aware(row["next_attempt_at"]),
            last_fetched=aware(row["last_fetched_at"]),
        ),
    )
