"""A loopback HTTP/1.1 feed server for tests and benchmarks: conditional GET, slow, failing feeds.

Each path gets a behaviour: "fresh" feeds answer 304 to a matching If-None-Match, "new" ones
grow by one entry per request, "slow" ones wait before answering, "fail" ones answer 500 and
"hang" ones accept the connection and never answer. The server records requests, conditional
requests and the peak number of requests in flight per host address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Behaviour = Literal["fresh", "new", "slow", "fail", "hang"]


def rss(path: str, entries: int, start: int = 0, events: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A small RSS 2.0 document with `entries` items, numbered from `start`.

    With `events` (title, text), item n tells events[n % len(events)]: distinct stories.
    """

    def told(n: int) -> tuple[str, str]:
        if events:
            return events[n % len(events)]
        return (
            f"Report {n} from {path}",
            f"Troops moved near the border, officials said ({path} {n}).",
        )

    items = "".join(
        f"<item><title>{told(n)[0]}</title><guid>{path}#{n}</guid>"
        f"<link>https://feeds.example{path}/{n}</link>"
        f"<description>{told(n)[1]}</description>"
        "<pubDate>Wed, 01 May 2024 08:30:00 +0000</pubDate></item>"
        for n in range(start, start + entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{path}</title><language>en</language>{items}</channel></rss>"
    ).encode()


@dataclass
class FeedServer:
    """Serves feeds on one or more loopback addresses; see the module docstring."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    slow_seconds: float = 0.2
    latency: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    conditional: Counter[str] = field(default_factory=Counter)
    not_modified: int = 0
    peak: Counter[str] = field(default_factory=Counter)
    connections: Counter[str] = field(default_factory=Counter)
    # What the items tell (see `rss`); empty: numbered reports of one event.
    events: tuple[tuple[str, str], ...] = ()
    _active: Counter[str] = field(default_factory=Counter)
    _grown: Counter[str] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        host = writer.get_extra_info("sockname")[0]
        self.connections[host] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await self._answer(host, path, headers, writer)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(
        self, host: str, path: str, headers: dict[str, str], writer: asyncio.StreamWriter
    ) -> None:
        self.requests[path] += 1
        self._active[host] += 1
        self.peak[host] = max(self.peak[host], self._active[host])
        try:
            behaviour = self.behaviours.get(path, "fresh")
            if self.latency:
                await asyncio.sleep(self.latency)
            if behaviour == "hang":
                await asyncio.Event().wait()
            if behaviour == "slow":
                await asyncio.sleep(self.slow_seconds)
            if behaviour == "fail":
                self._write(writer, 500, b"broken", {})
                return
            if behaviour == "new":
                self._grown[path] += 1
            etag = f'"{path}-{self._grown[path]}"'
            if "if-none-match" in headers:
                self.conditional[path] += 1
                if headers["if-none-match"] == etag:
                    self.not_modified += 1
                    self._write(writer, 304, b"", {"ETag": etag})
                    return
            body = rss(path, 3, start=self._grown[path], events=self.events)
            self._write(writer, 200, body, {"ETag": etag, "Content-Type": "application/rss+xml"})
        finally:
            self._active[host] -= 1
        await writer.drain()

    @staticmethod
    def _write(
        writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        reason = {200: "OK", 304: "Not Modified", 500: "Internal Server Error"}[status]
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    @contextlib.asynccontextmanager
    async def serving(self, hosts: list[str]) -> AsyncIterator[dict[str, int]]:
        """Listen on each loopback address in `hosts`; yields {host: port}."""
        servers = [await asyncio.start_server(self._handle, host, 0) for host in hosts]
        try:
            yield {
                host: server.sockets[0].getsockname()[1]
                for host, server in zip(hosts, servers, strict=True)
            }
        finally:
            for server in servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for server in servers:
                await server.wait_closed()
