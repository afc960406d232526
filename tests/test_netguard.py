"""Tests for bot.netguard: the SSRF guard by name, and again at connect time."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpcore
import httpx
import pytest

from bot.feeds import fetch
from bot.fetch import FeedState
from bot.netguard import UnsafeURL, _GuardedBackend, check_url, guarded_transport
from tests.feedfakes import (
    FEED_URL,
    NOW,
    PUBLIC_IP,
    Handler,
    fake_dns,
    feed_bytes,
    loopback_servers,
)

# Checklist 21 (and issue 11 item 18): every test here is part of the SSRF guard.
pytestmark = pytest.mark.reliability


@pytest.fixture
async def loopback() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    async for start in loopback_servers():
        yield start


# --- check_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.0.0.1:8080/feed", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:a00:1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        # Issue 11 item 18: site-local was accepted, as were these other non-global ranges.
        ("http://[fec0::1]/", "site-local"),
        ("http://[feff::1]/", "site-local"),
        ("http://[64:ff9b:1::a00:1]/", "reserved"),
        ("http://[3fff::1]/", "documentation"),
        ("http://192.0.0.9/", "protocol-assignment"),
        ("http://192.88.99.1/", "6to4-relay"),
        ("http://[2002:a00:1::1]/", "private"),  # 6to4 wrapping 10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://100.64.0.1/", "non-public"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://localhost:8000/", "loopback"),
        ("http://internal.example/feed", "resolves to 10.0.0.1"),
        ("http://mixed.example/feed", "resolves to 192.168.1.5"),
        ("file:///etc/passwd", "file: addresses are not allowed"),
        ("/etc/passwd", "not a web address"),
        ("ftp://ftp.example.com/feed.xml", "ftp: addresses are not allowed"),
        ("javascript:alert(1)", "javascript: addresses are not allowed"),
        ("http://feeds.example.com@127.0.0.1/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://[::1/", "not a valid web address"),
    ],
)
async def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=re.escape(reason)):
        await check_url(url, resolve=fake_dns)


@pytest.mark.parametrize("url", [FEED_URL, "http://v6.example/x", "https://93.184.216.34/f"])
async def test_check_url_accepts_public(url: str) -> None:
    await check_url(url, resolve=fake_dns)


async def test_check_url_allow_private_still_checks_scheme() -> None:
    await check_url("http://127.0.0.1:8080/", allow_private=True, resolve=fake_dns)
    with pytest.raises(UnsafeURL, match="file:"):
        await check_url("file:///etc/passwd", allow_private=True, resolve=fake_dns)


async def test_check_url_unresolvable_host() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeURL, match=r"cannot resolve host nowhere\.example"):
        await check_url("http://nowhere.example/", resolve=failing)


async def test_guarded_transport_blocks_dns_rebinding(loopback: Any) -> None:
    contacted: list[bool] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        contacted.append(True)

    url = await loopback(record)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])  # public for the check, loopback to connect

    async def rebinding_dns(host: str, port: int) -> list[str]:
        assert host == "rebind.example"
        return next(answers)

    state = FeedState(f"http://rebind.example:{port}/feed")
    async with httpx.AsyncClient(transport=guarded_transport(resolve=rebinding_dns)) as client:
        result = await fetch(client, state, now=NOW, resolve=rebinding_dns)
    assert result.error is not None
    assert "rebind.example resolves to 127.0.0.1, which is a loopback address" in result.error
    await asyncio.sleep(0)  # give the server a chance to see a connection, had one been made
    assert contacted == []


async def test_guarded_backend_connects_to_the_vetted_address() -> None:
    calls: list[str] = []

    class Recording(httpcore.AsyncMockBackend):
        async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            calls.append(f"{host}:{port}")
            return await super().connect_tcp(host, port, *args, **kwargs)

    body = feed_bytes("rss20.xml")
    inner = Recording(
        [b"HTTP/1.1 200 OK\r\n", f"Content-Length: {len(body)}\r\n\r\n".encode(), body]
    )
    transport = guarded_transport(resolve=fake_dns)
    transport._pool._network_backend = _GuardedBackend(inner, fake_dns)
    async with httpx.AsyncClient(transport=transport) as client:
        result = await fetch(
            client, FeedState("http://feeds.example.com/rss"), now=NOW, resolve=fake_dns
        )
    assert result.error is None and len(result.articles) == 2
    assert calls == [f"{PUBLIC_IP}:80"]


def test_guarded_transport_refuses_proxies() -> None:
    with pytest.raises(TypeError, match="proxies"):
        guarded_transport(proxy="http://proxy.example:3128")
