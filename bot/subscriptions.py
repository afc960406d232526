"""Chats subscribed to alerts and digests, with their preferences."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import aware, utcnow
from bot.models import OWED, ChatRef, DeliveryStatus, Preferences
from bot.schema import deliveries, subscriptions


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


class Subscriptions:
    """Who receives what: subscribe, preferences, and a chat's moves and departures."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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
                        created_at=utcnow(),
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
                    deliveries.c.status.in_(OWED),
                )
                .values(
                    status=DeliveryStatus.CANCELLED,
                    lease_until=None,
                    last_error="chat unsubscribed",
                )
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

    async def active(self, platform: str | None = None) -> list[Subscription]:
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
                    deliveries.c.status.in_(OWED),
                )
                .values(
                    status=DeliveryStatus.FAILED,
                    last_error="chat unavailable: subscription deactivated",
                )
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
                    deliveries.c.status.in_(OWED),
                )
            )
            for owed in owed_here.all():
                if (owed.thread_id, owed.kind, owed.key) in owed_there:
                    change: dict[str, Any] = {
                        "status": DeliveryStatus.CANCELLED,
                        "lease_until": None,
                        "last_error": f"already owed at the chat's new id {new_chat_id}",
                    }
                else:
                    change = {"chat_id": new_chat_id}
                await conn.execute(
                    deliveries.update().where(deliveries.c.id == owed.id).values(change)
                )


def _chat_update(chat: ChatRef) -> sa.Update:
    return subscriptions.update().where(
        subscriptions.c.platform == chat.platform,
        subscriptions.c.chat_id == chat.chat_id,
        subscriptions.c.thread_id == (chat.thread_id or ""),
    )


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row["id"],
        chat=ChatRef(row["platform"], row["chat_id"], row["thread_id"] or None),
        active=bool(row["active"]),
        lang=row["lang"],
        prefs=preferences_from_json(row["settings"]),
        last_digest_at=aware(row["last_digest_at"]),
        created_at=aware(row["created_at"]) or utcnow(),
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
