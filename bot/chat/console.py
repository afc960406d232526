"""The console chat: lines from stdin are messages, posts are printed; for local runs and pipes."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import getpass
import logging
import sys
import threading
from collections.abc import AsyncIterator
from typing import TextIO

from bot.chat import Handler
from bot.chat.render import plain
from bot.models import ChatRef, Inbound, Limits, Notice, Post, Sent

log = logging.getLogger(__name__)

CHAT = ChatRef("console", "local")


PROMPT = "Type a question or /help; Ctrl-D quits."


async def stdin_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines from stdin, read in a daemon thread; ends at end of input or a closed stdin.

    A thread, not the event loop's reader: epoll refuses regular files and /dev/null (`newsbot
    run < /dev/null` under systemd or `cmd &`), and a terminal gets line editing and history
    from `readline` through `input()`. Daemon: a thread blocked on a quiet terminal or pipe
    must not keep the process alive after a signal.
    """
    stream = sys.stdin if stream is None else stream
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    if stream is not None and _is_terminal(stream):
        _restore_terminal_at_exit(stream)

    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def read() -> None:
        try:
            if stream is None:
                return  # stdin closed altogether (`newsbot run 0<&-`)
            if _is_terminal(stream):
                with contextlib.suppress(ImportError):  # not every Python build has it
                    import readline  # noqa: F401 - importing it gives input() editing and history

                while True:
                    put(input() + "\n")
            else:
                binary = getattr(stream, "buffer", None)
                if binary is None:
                    for line in iter(stream.readline, ""):
                        put(line)
                else:
                    for raw in iter(binary.readline, b""):
                        put(raw.decode("utf-8", errors="replace"))
        except (EOFError, OSError, ValueError):
            pass  # Ctrl-D, or a stdin that was closed or can't be read: end of input
        finally:
            put(None)

    threading.Thread(target=read, name="console-input", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


def _restore_terminal_at_exit(stream: TextIO) -> None:
    """Put the terminal's modes back when the process ends: readline switches echo and line
    mode off while it waits, and a signal (Ctrl-C, SIGTERM) ends us in the middle of that."""
    try:
        import termios

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except Exception:  # no termios (not Unix), or not a terminal after all (termios.error)
        return

    def restore() -> None:
        with contextlib.suppress(Exception):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    atexit.register(restore)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


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
        """Say how to use the chat, then read messages; `finished` is set at end of input."""
        self.out.write(PROMPT + "\n\n")
        self.out.flush()
        self._task = asyncio.create_task(self._read(handler), name="console-chat")

    async def stop(self) -> None:
        """Stop reading input."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.finished.set()

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
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
