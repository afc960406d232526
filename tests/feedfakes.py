"""Doubles for the feed tests: a fake resolver, a recording MockTransport, loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.models import Article

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
SHARED = Path(os.environ.get("NEWSBOT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
BADINPUT = SHARED / "badinput" / "feeds"
PUBLIC_IP = "93.184.216.34"
FEED_URL = "https://feeds.example.com/rss"
NO_JITTER: Callable[[], float] = lambda: 0.0  # noqa: E731

DNS: dict[str, list[str]] = {
    "feeds.example.com": [PUBLIC_IP],
    "news.example.com": [PUBLIC_IP],
    "pages.example.com": [PUBLIC_IP],
    "internal.example": ["10.0.0.1"],
    "mixed.example": [PUBLIC_IP, "192.168.1.5"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
}


async def fake_dns(host: str, port: int) -> list[str]:
    """Test resolver: known names only; anything else is a test bug, not a DNS failure."""
    if host not in DNS:
        raise AssertionError(f"unexpected DNS lookup for {host!r}")
    return DNS[host]


Route = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Recorder:
    """MockTransport handler: serves routes by URL, records requests, fails on anything else."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(str(request.url))
        if route is None:
            raise AssertionError(f"unexpected request to {request.url}")
        return route(request) if callable(route) else route

    @property
    def urls(self) -> list[str]:
        return [str(r.url) for r in self.requests]


def mock_client(recorder: Recorder) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(recorder))


def feed_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def shared_file(*parts: str) -> Path:
    path = BADINPUT.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared bad-input corpus not found at {BADINPUT} (set NEWSBOT_SHARED)")
    return path


class CountingStream(httpx.AsyncByteStream):
    """A response body served in fixed chunks, counting how much the client pulled."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data = data
        self.chunk = chunk
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.served < len(self.data):
            piece = self.data[self.served : self.served + self.chunk]
            self.served += len(piece)
            yield piece


def assert_str_fields(article: Article) -> None:
    for name in ("id", "title", "text", "lang", "published"):
        assert isinstance(getattr(article, name), str), name
    for name in ("place", "agency", "url", "source"):
        assert getattr(article, name) is None or isinstance(getattr(article, name), str), name


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def loopback_servers() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def start(handler: Handler) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            writers.append(writer)
            with contextlib.suppress(ConnectionError):
                await handler(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/feed"

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()
