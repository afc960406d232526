"""The chat port: what every chat platform adapter offers, and the one handler it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

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

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        """Deliver one post (split to platform limits); raise on failure.

        `skip_parts`: that many leading parts were delivered by an earlier attempt; send the
        rest. A failure after some parts went out says so in `DeliveryError.delivered_parts`.
        """
        ...


@runtime_checkable
class Leads(Protocol):
    """An adapter with an inbound channel only one instance may hold (Telegram's getUpdates)."""

    async def lead(self, leading: bool) -> None:
        """Take up (True) or hand over (False) the single-holder inbound channel."""
        ...


class StartError(Exception):
    """An adapter cannot start as configured (e.g. a rejected token); says what to fix."""


class DeliveryError(Exception):
    """A platform refused or failed a send; adapters translate their errors into this.

    `retry_after`: the platform asked us to wait this many seconds (429 / RetryAfter).
    `chat_gone`: the bot was blocked, kicked or the chat deleted; stop sending there.
    `migrated_to`: the chat has a new id (Telegram group → supergroup); resend there.
    `permanent`: retrying the same message cannot succeed (e.g. it is malformed).
    `unavailable`: the adapter is not connected (not started yet, or stopped); try later,
    without counting an attempt.
    `delivered_parts`/`message_ids`: parts of this post the platform acknowledged in this call
    before it failed (after the skipped ones), so a retry resumes instead of repeating them.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        chat_gone: bool = False,
        migrated_to: str | None = None,
        permanent: bool = False,
        unavailable: bool = False,
        delivered_parts: int = 0,
        message_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.unavailable = unavailable
        self.delivered_parts = delivered_parts
        self.message_ids = message_ids
        self.retry_after = retry_after
        self.chat_gone = chat_gone
        self.migrated_to = migrated_to
        self.permanent = permanent or chat_gone


def api_host(url: str) -> str:
    """Scheme, host and port of a platform's API URL, for log lines: never its path (Telegram's
    ends in the token), query or credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if host else "the platform's API"
