"""One platform rate limit shared by every instance: send slots booked in PostgreSQL or Redis.

The in-process `Pacer` keeps one process within a platform's limits; several processes sending
for one bot need one book of slots. Each booking reserves the platform-wide slot and the chat's
slot atomically on the shared server and answers with how long to wait, measured on that
server's clock, so instances on hosts whose clocks differ still space their sends correctly.
A chat that may not send at the platform's next slot (its own interval) books nothing: its
sender comes back when the chat is ready, and the platform's slots meanwhile go to other chats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.models import ChatRef, Limits

log = logging.getLogger(__name__)

# A slot started later than this after its booking pushes later slots back (see `late`).
LATE_SECONDS = 0.005
# Shared slots are booked at this share of the platform's rate. Between a slot booked here and
# the message reaching the platform lie a round trip to the shared server and another process's
# event loop and HTTP client; at 85 % a strict 1 s window stays within the limit through ~190 ms
# of that jitter (25.1 x 1.19 < 30), where the adapters' own 29.5 of 30 would allow ~17 ms.
# Measured on a loaded 2-core machine (three `newsbot run`, the leader killed mid-digest): at
# 90 % (26.55/s) the busiest 1 s reached 31 and drew a 429 in 2 of 6 runs once every booked
# slot was used; at 85 % no 429 in 9 runs, the busiest 1 s 26-27 where measured.
SHARED_RATE = 0.85
# A send that would start later than this after its slot (a stalled, CPU-starved process) books
# a fresh slot instead: its window already holds the other instances' on-time sends, and pushing
# later slots cannot take those back. Within it, any 1 s window holds sends of at most
# 1.05 s of slots (25.1 x 1.05 < 27 of 30), the rest of the headroom for the HTTP leg.
STALE_SLOT = 0.05
# Fresh slots a send books in a row before it goes on the last one however late (a process
# starved for good still delivers; the headroom and `late` cover that rare send).
MAX_REBOOKS = 3
# Redis keys of chats that sent nothing for this long expire (their slot is long past).
REDIS_TTL_MS = 3_600_000

# Booking in one round trip: take the platform's row lock first (every booking does, so two
# bookings never lock in opposite order), read the clock only once it is ours, then the chat's.
# (Schema step 5; it booked a chat's own later slot and moved the platform's past the slots in
# between. Kept for instances still running that code during a rolling upgrade.)
PG_BOOK_FUNCTION = """
CREATE OR REPLACE FUNCTION newsbot_book_send(
    g text, c text, gap float8, chat_gap float8, horizon float8
) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    t float8; gn float8; cn float8; slot float8;
BEGIN
    INSERT INTO send_slots (key, next_at) VALUES (g, 0) ON CONFLICT (key) DO NOTHING;
    SELECT next_at INTO gn FROM send_slots WHERE key = g FOR UPDATE;
    INSERT INTO send_slots (key, next_at) VALUES (c, 0) ON CONFLICT (key) DO NOTHING;
    SELECT next_at INTO cn FROM send_slots WHERE key = c FOR UPDATE;
    t := extract(epoch FROM clock_timestamp());
    slot := greatest(t, gn, cn);
    IF slot - t > horizon THEN
        RETURN slot - t;
    END IF;
    UPDATE send_slots SET next_at = slot + gap WHERE key = g;
    UPDATE send_slots SET next_at = slot + chat_gap WHERE key = c;
    RETURN slot - t;
END $$
"""

# Schema step 10: the platform's next slot, booked only for a chat that may send then. Booking
# a chat's own later slot instead (step 5) moved the platform's cursor past every slot before
# it: each chat owed two messages in one batch left ~1 s of the platform's slots unused.
PG_BOOK_SLOT_FUNCTION = """
CREATE OR REPLACE FUNCTION newsbot_book_slot(
    g text, c text, gap float8, chat_gap float8, horizon float8,
    OUT wait float8, OUT booked boolean
) LANGUAGE plpgsql AS $$
DECLARE
    t float8; gn float8; cn float8; slot float8;
BEGIN
    INSERT INTO send_slots (key, next_at) VALUES (g, 0) ON CONFLICT (key) DO NOTHING;
    SELECT next_at INTO gn FROM send_slots WHERE key = g FOR UPDATE;
    INSERT INTO send_slots (key, next_at) VALUES (c, 0) ON CONFLICT (key) DO NOTHING;
    SELECT next_at INTO cn FROM send_slots WHERE key = c FOR UPDATE;
    t := extract(epoch FROM clock_timestamp());
    slot := greatest(t, gn);
    IF cn > slot THEN
        wait := cn - t;
        booked := false;
        RETURN;
    END IF;
    wait := slot - t;
    booked := wait <= horizon;
    IF booked THEN
        UPDATE send_slots SET next_at = slot + gap WHERE key = g;
        UPDATE send_slots SET next_at = slot + chat_gap WHERE key = c;
    END IF;
END $$
"""

PG_LATE = """
INSERT INTO send_slots (key, next_at) VALUES
    (:g, extract(epoch FROM clock_timestamp()) + CAST(:gap AS float8)),
    (:c, extract(epoch FROM clock_timestamp()) + CAST(:chat_gap AS float8))
ON CONFLICT (key) DO UPDATE SET next_at = greatest(send_slots.next_at, EXCLUDED.next_at)
"""

PG_PAUSE = """
INSERT INTO send_slots (key, next_at)
VALUES (:g, extract(epoch FROM clock_timestamp()) + CAST(:s AS float8))
ON CONFLICT (key) DO UPDATE SET next_at = greatest(send_slots.next_at, EXCLUDED.next_at)
"""

REDIS_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local c = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(now, g)
if c > slot then
    return {tostring(c - now), 0}
end
if slot - now > tonumber(ARGV[3]) then
    return {tostring(slot - now), 0}
end
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'PX', ARGV[4])
redis.call('SET', KEYS[2], tostring(slot + tonumber(ARGV[2])), 'PX', ARGV[4])
return {tostring(slot - now), 1}
"""

REDIS_PUSH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
    local at = now + tonumber(ARGV[i])
    local was = tonumber(redis.call('GET', key) or '0')
    if at > was then
        redis.call('SET', key, tostring(at), 'PX', ARGV[#KEYS + 1])
    end
end
return 1
"""


def create_schema(conn: Connection) -> None:
    """Schema step: the shared send slots (PostgreSQL only; SQLite has one instance per file)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS send_slots ("
            " key VARCHAR(300) PRIMARY KEY, next_at DOUBLE PRECISION NOT NULL)"
        )
    )
    conn.execute(sa.text(PG_BOOK_FUNCTION))


def book_when_ready(conn: Connection) -> None:
    """Schema step: the booking function that leaves the platform's slots to chats ready then."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(sa.text(PG_BOOK_SLOT_FUNCTION))


def platform_gap(limits: Limits) -> float:
    """The least time between two messages to one platform that the shared book keeps."""
    return 1.0 / (limits.per_second * SHARED_RATE)


def chat_gap(limits: Limits, chat: ChatRef) -> float:
    """The least time between two messages to `chat` that the shared book keeps."""
    gap = limits.chat_interval
    prefix = limits.group_prefix
    if limits.group_per_minute and prefix is not None and chat.chat_id.startswith(prefix):
        # A shared sliding window per group would cost a round trip per past send; an even
        # spacing never exceeds the per-minute limit either.
        gap = max(gap, 60.0 / limits.group_per_minute)
    return gap


@dataclass(frozen=True, slots=True)
class Slot:
    """A booking's answer: the wait in s (on the server's clock) and whether it was booked.

    Not booked: the chat may not send at the platform's next slot (`wait` until it may), or
    that slot is beyond the horizon (`wait` until it)."""

    wait: float
    booked: bool


class SharedLimit(Protocol):
    """A book of send slots several instances share."""

    async def book(self, chat: ChatRef, limits: Limits, horizon: float) -> Slot:
        """Reserve the platform's next slot, within `horizon`, for `chat` if it may send then."""
        ...

    async def late(self, chat: ChatRef, limits: Limits) -> None:
        """A booked send started late: keep the next slots one gap after now."""
        ...

    async def pause(self, platform: str, seconds: float) -> None:
        """Hold every instance's sends to `platform` for `seconds` (the platform's retry-after)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def _keys(chat: ChatRef) -> tuple[str, str]:
    # Limits apply per chat, whatever topic/thread inside it a message targets.
    return chat.platform, f"{chat.platform}:{chat.chat_id}"


class DatabaseLimit:
    """Send slots in the PostgreSQL table `send_slots` (the store's schema), one call each."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Its own autocommit engine: a booking is one statement, never part of a transaction.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def book(self, chat: ChatRef, limits: Limits, horizon: float) -> Slot:
        """Reserve the platform's next slot, within `horizon`, for `chat` if it may send then."""
        g, c = _keys(chat)
        async with self.engine.connect() as conn:
            result = await conn.execute(
                sa.text(
                    "SELECT wait, booked FROM newsbot_book_slot(:g, :c, :gap, :chat_gap, :horizon)"
                ),
                {
                    "g": g,
                    "c": c,
                    "gap": platform_gap(limits),
                    "chat_gap": chat_gap(limits, chat),
                    "horizon": horizon,
                },
            )
            wait, booked = result.one()
        return Slot(max(0.0, float(wait)), bool(booked))

    async def late(self, chat: ChatRef, limits: Limits) -> None:
        """A booked send started late: keep the next slots one gap after now."""
        g, c = _keys(chat)
        params = {"g": g, "c": c, "gap": platform_gap(limits), "chat_gap": chat_gap(limits, chat)}
        async with self.engine.connect() as conn:
            await conn.execute(sa.text(PG_LATE), params)

    async def pause(self, platform: str, seconds: float) -> None:
        """Hold every instance's sends to `platform` for `seconds` (the platform's retry-after)."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text(PG_PAUSE), {"g": platform, "s": seconds})

    async def close(self) -> None:
        """Nothing of its own to close: the store disposes of the engine."""


class RedisLimit:
    """Send slots as Redis keys under `prefix`, booked by one Lua script per send."""

    def __init__(self, url: str, prefix: str = "newsbot") -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self._book = self.client.register_script(REDIS_BOOK)
        self._push = self.client.register_script(REDIS_PUSH)

    def _names(self, chat: ChatRef) -> list[str]:
        return [f"{self.prefix}:slot:{key}" for key in _keys(chat)]

    async def book(self, chat: ChatRef, limits: Limits, horizon: float) -> Slot:
        """Reserve the platform's next slot, within `horizon`, for `chat` if it may send then."""
        args = [platform_gap(limits), chat_gap(limits, chat), horizon, REDIS_TTL_MS]
        wait, booked = await self._book(keys=self._names(chat), args=args)
        return Slot(max(0.0, float(wait)), bool(booked))

    async def late(self, chat: ChatRef, limits: Limits) -> None:
        """A booked send started late: keep the next slots one gap after now."""
        args = [platform_gap(limits), chat_gap(limits, chat), REDIS_TTL_MS]
        await self._push(keys=self._names(chat), args=args)

    async def pause(self, platform: str, seconds: float) -> None:
        """Hold every instance's sends to `platform` for `seconds` (the platform's retry-after)."""
        key = f"{self.prefix}:slot:{platform}"
        await self._push(keys=[key], args=[seconds, max(REDIS_TTL_MS, int(seconds * 2000))])

    async def close(self) -> None:
        """Close the client's connection pool."""
        await self.client.aclose()
