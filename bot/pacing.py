"""Per-platform send pacing: book each message a time slot so platform rate limits are never hit."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping

from bot.models import ChatRef, Limits

__all__ = ["PLATFORM_LIMITS", "Limits", "Pacer"]


# Explicit per-platform overrides of what adapters declare (`adapter.limits`); empty by default.
PLATFORM_LIMITS: Mapping[str, Limits] = {}


JITTER = 0.005


class Pacer:
    """Books send slots (in seconds on the caller's clock) that respect one platform's limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._next_global = 0.0
        self._next_chat: dict[str, float] = {}
        self._group_sends: defaultdict[str, deque[float]] = defaultdict(deque)
        self._paused_until = 0.0

    def is_group(self, chat: ChatRef) -> bool:
        """Whether the platform treats `chat` as a group with its own per-minute limit."""
        prefix = self.limits.group_prefix
        return prefix is not None and chat.chat_id.startswith(prefix)

    def slot(self, chat: ChatRef, now: float) -> float:
        """The earliest time a message to `chat` may go, without booking it."""
        key = _key(chat)
        at = max(now, self._next_global, self._paused_until, self._next_chat.get(key, 0.0))
        per_minute = self.limits.group_per_minute
        if per_minute is not None and self.is_group(chat):
            sends = self._group_sends[key]
            while sends and sends[0] <= at - 60.0:
                sends.popleft()
            if len(sends) >= per_minute:
                at = max(at, sends[len(sends) - per_minute] + 60.0)
        return at

    def chat_delay(self, chat: ChatRef, now: float) -> float:
        """How much later than the platform's next slot `chat` itself may send (0: ready then)."""
        platform = max(now, self._next_global, self._paused_until)
        return max(0.0, self.slot(chat, now) - platform)

    def book(self, chat: ChatRef, now: float) -> float:
        """Reserve the earliest allowed slot for a message to `chat` and return it."""
        # A sender a few milliseconds late keeps the cadence instead of drifting behind it;
        # later than that, the cadence restarts from now (no catch-up burst).
        if 0 < now - self._next_global < 0.5 / self.limits.per_second:
            now = self._next_global
        at = self.slot(chat, now)
        key = _key(chat)
        self._next_global = at + 1.0 / self.limits.per_second
        if self.limits.chat_interval:
            self._next_chat[key] = at + self.limits.chat_interval
        if self.limits.group_per_minute is not None and self.is_group(chat):
            self._group_sends[key].append(at)
        return at

    def started(self, chat: ChatRef, at: float, booked: float) -> None:
        """A send booked for `booked` actually went out at `at`: later slots keep their distance."""
        # A send that started late (a busy event loop) must not leave the next one closer to it
        # than the platform allows. Millisecond jitter is absorbed by the headroom in the rates,
        # and ignoring it keeps the cadence from drifting slower with every message.
        if at - booked <= JITTER:
            return
        self._next_global = max(self._next_global, at + 1.0 / self.limits.per_second)
        if self.limits.chat_interval:
            key = _key(chat)
            self._next_chat[key] = max(
                self._next_chat.get(key, 0.0), at + self.limits.chat_interval
            )

    def pause(self, until: float) -> None:
        """Hold every send until `until` (the platform said retry-after)."""
        self._paused_until = max(self._paused_until, until)


def _key(chat: ChatRef) -> str:
    # Limits apply per chat, whatever topic/thread inside it a message targets.
    return chat.chat_id
