"""Test doubles: a chat that records what it was sent and fails as scripted, and a virtual clock."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime, timedelta

from bot.chat import DeliveryError, Handler
from bot.chat.console import ConsoleChat
from bot.chat.slack import SlackChat
from bot.chat.telegram import TelegramChat
from bot.models import ChatRef, Limits, Post, Sent

# As the real adapters declare them (what the Outbox paces by).
PLATFORM_RATES = {
    "telegram": TelegramChat.limits,
    "slack": SlackChat.limits,
    "console": ConsoleChat.limits,
}


class VirtualClock:
    """Time that only moves when someone sleeps: no real waiting in tests."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, 8, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Let tasks that are ready run at the current time first, as a real sleep would.
        await asyncio.sleep(0)
        self.now += timedelta(seconds=max(0.0, seconds))


class FakeChat:
    """A chat platform that records every send with the virtual time it happened."""

    def __init__(self, platform: str = "telegram", clock: VirtualClock | None = None) -> None:
        self.platform = platform
        self.limits = PLATFORM_RATES.get(platform, Limits(per_second=1.0, chat_interval=1.0))
        self.clock = clock
        self.sent: list[tuple[ChatRef, Post, datetime | None]] = []
        self.failures: deque[Exception] = deque()
        self.fail_for: dict[str, Exception] = {}
        self.attempts = 0
        self.skipped: list[int] = []
        # Every try, successful or not: (chat id, virtual time).
        self.tries: list[tuple[str, datetime | None]] = []
        self.fail_once_for: dict[str, Exception] = {}

    def fail_next(self, *errors: Exception) -> None:
        self.failures.extend(errors)

    async def start(self, handler: Handler) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        self.attempts += 1
        self.skipped.append(skip_parts)
        self.tries.append((chat.chat_id, self.clock() if self.clock else None))
        if chat.chat_id in self.fail_for:
            raise self.fail_for[chat.chat_id]
        if chat.chat_id in self.fail_once_for:
            raise self.fail_once_for.pop(chat.chat_id)
        if self.failures:
            raise self.failures.popleft()
        self.sent.append((chat, post, self.clock() if self.clock else None))
        return Sent((str(len(self.sent)),))


def retry_after(seconds: float) -> DeliveryError:
    return DeliveryError("Too Many Requests", retry_after=seconds)
