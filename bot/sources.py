"""The feeds newsbot polls, with their HTTP cache validators and error state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import aware, utcnow
from bot.fetch import FeedState
from bot.schema import sources


@dataclass(frozen=True, slots=True)
class FeedSource:
    """A feed newsbot polls: who added it, how often, and its fetch state between polls."""

    id: int
    name: str
    added_by: str
    interval_seconds: int
    # The fetcher's own record (URL, HTTP cache validators, errors, back-off), stored as is.
    state: FeedState

    @property
    def url(self) -> str:
        """The feed's address."""
        return self.state.url


class Sources:
    """Feeds to poll: added from the config or in a chat, removed, and their fetch state."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
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
                        created_at=utcnow(),
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

    async def remove(self, source: int | str) -> bool:
        """Stop polling a feed (by id or URL); its articles stay."""
        match = sources.c.id == source if isinstance(source, int) else sources.c.url == source
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sources.update().where(match, sources.c.active.is_(True)).values(active=False)
            )
            return bool(result.rowcount)

    async def get(self, source_id: int) -> FeedSource | None:
        """One feed by id (active or not)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sources).where(sources.c.id == source_id))).first()
        return _source(row._mapping) if row else None

    async def active(self) -> list[FeedSource]:
        """Active feeds."""
        query = sa.select(sources).where(sources.c.active.is_(True)).order_by(sources.c.id)
        async with self.engine.connect() as conn:
            return [_source(r._mapping) for r in await conn.execute(query)]

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


def _source(row: Any) -> FeedSource:
    return FeedSource(
        id=row["id"],
        name=row["name"],
        added_by=row["added_by"],
        interval_seconds=row["interval_seconds"],
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
