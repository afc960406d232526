"""The chat port: what every chat platform adapter offers, and the one handler it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.models import ChatRef, Inbound, Limits, Post, Sent

Handler = Callable[[Inbound], Awaitable[Sequence[Post]]]
"""Core entry point for everything users say: a command or a question in, posts to reply out."""

Pace = Callable[[ChatRef], Awaitable[None]]
"""Wait for this chat's next send slot on the platform's shared timeline (the Outbox's pacer)."""


class ChatAdapter(Protocol):
    """A chat platform: translates its payloads to Inbound/Post and nothing more."""

    platform: str
    # The platform's rate limits; the Outbox and reply pacing book send slots by them.
    limits: Limits

    async def start(self, handler: Handler) -> None:
        """Connect; pass inbound messages to `handler` and reply with what it returns."""
        ...

    async def stop(self) -> None:
        """Stop receiving, finish in-flight replies and disconnect."""
        ...

    async def send(self, chat: ChatRef, post: Post) -> Sent:
        """Deliver one post (split to platform limits); raise on failure."""
        ...


class DeliveryError(Exception):
    """A platform refused or failed a send; adapters translate their errors into this.

    `retry_after`: the platform asked us to wait this many seconds (429 / RetryAfter).
    `chat_gone`: the bot was blocked, kicked or the chat deleted; stop sending there.
    `migrated_to`: the chat has a new id (Telegram group → supergroup); resend there.
    `permanent`: retrying the same message cannot succeed (e.g. it is malformed).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        chat_gone: bool = False,
        migrated_to: str | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.chat_gone = chat_gone
        self.migrated_to = migrated_to
        self.permanent = permanent or chat_gone
