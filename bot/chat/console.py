"""The console chat: lines from stdin are messages, posts are printed; for local runs and pipes."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from bot.chat import Handler
from bot.chat.render import plain
from bot.models import ChatRef, Inbound, Limits, Notice, Post, Sent

log = logging.getLogger(__name__)

CHAT = ChatRef("console", "local")


async def stdin_lines(stream: TextIO = sys.stdin) -> AsyncIterator[str]:
    """Lines from stdin without blocking the event loop (pipes and terminals)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )
    except (ValueError, OSError):
        # A regular file (`newsbot run < questions.txt`) can't be watched as a pipe, but reading
        # it never blocks for long, so plain iteration is fine.
        for line in stream:
            yield line
        return
    try:
        while line_bytes := await reader.readline():
            yield line_bytes.decode("utf-8", errors="replace")
    finally:
        transport.close()


class ConsoleChat:
    """A chat whose one user types on stdin and reads on stdout."""

    platform = "console"
    limits = Limits(per_second=1000.0)

    def __init__(
        self,
        lines: AsyncIterator[str] | None = None,
        out: TextIO | None = None,
        lang: str | None = None,
    ) -> None:
        self.lines = lines
        self.out = out or sys.stdout
        self.lang = lang
        self.user = _user()
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sent = 0

    async def start(self, handler: Handler) -> None:
        """Begin reading messages; `finished` is set at end of input."""
        self._task = asyncio.create_task(self._read(handler), name="console-chat")

    async def stop(self) -> None:
        """Stop reading input."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.finished.set()

    async def send(self, chat: ChatRef, post: Post) -> Sent:
        """Print one post."""
        self.out.write(plain(post) + "\n\n")
        self.out.flush()
        self._sent += 1
        return Sent((str(self._sent),))

    async def _read(self, handler: Handler) -> None:
        lines = self.lines if self.lines is not None else stdin_lines()
        try:
            async for line in lines:
                if not line.strip():
                    continue
                message = Inbound(CHAT, line.strip(), user=self.user, lang=self.lang)
                try:
                    posts = await handler(message)
                except Exception:
                    # One bad message must not end the session; the log has the details.
                    log.exception("handling console input failed")
                    posts = [Notice("Sorry, that failed; see the log for details.")]
                for post in posts:
                    await self.send(CHAT, post)
        finally:
            self.finished.set()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "console"
