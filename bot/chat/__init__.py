"""The chat port: what every chat platform adapter offers, and the one handler it calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.models import ChatRef, Inbound, Post, Sent

Handler = Callable[[Inbound], Awaitable[Sequence[Post]]]
"""Core entry point for everything users say: a command or a question in, posts to reply out."""


class ChatAdapter(Protocol):
    """A chat platform: translates its payloads to Inbound/Post and nothing more."""

    platform: str

    async def start(self, handler: Handler) -> None:
        """Connect; pass inbound messages to `handler` and reply with what it returns."""
        ...

    async def stop(self) -> None:
        """Stop receiving, finish in-flight replies and disconnect."""
        ...

    async def send(self, chat: ChatRef, post: Post) -> Sent:
        """Deliver one post (split to platform limits); raise on failure."""
        ...
