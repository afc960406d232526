"""Tests for bot.fetch: conditional GET, redirects, caps, deadlines, back-off."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.feeds import fetch
from bot.fetch import BACKOFF_CAP, FeedState, FetchLimits, HostGate, backoff, canonical_url
from tests.feedfakes import (
    FEED_URL,
    NO_JITTER,
    NOW,
    CountingStream,
    Handler,
    Recorder,
    Route,
    fake_dns,
    feed_bytes,
    loopback_servers,
    mock_client,
    shared_file,
)
from tests.feedserver import FeedServer


@pytest.fixture
async def loopback() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    async for start in loopback_servers():
        yield start


# --- fetch: conditional GET, redirects, errors as data -------------------------------------


def rss_response(request: httpx.Request, **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=feed_bytes("rss20.xml"),
        headers={"Content-Type": "application/rss+xml; charset=utf-8", **headers},
    )


@pytest.mark.reliability
async def test_conditional_get_and_304() -> None:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304, headers={"ETag": '"v1"'})
        return rss_response(
            request, ETag='"v1"', **{"Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"}
        )

    recorder = Recorder({FEED_URL: handler})
    async with mock_client(recorder) as client:
        first = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
        second = await fetch(client, first.state, now=NOW + timedelta(minutes=5), resolve=fake_dns)

    assert first.error is None and not first.not_modified
    assert len(first.articles) == 2
    assert first.state.etag == '"v1"'
    assert first.state.last_modified == "Wed, 01 May 2024 10:00:00 GMT"
    assert first.state.last_fetched == NOW
    assert "if-none-match" not in seen[0] and "if-modified-since" not in seen[0]
    assert seen[1]["if-none-match"] == '"v1"'
    assert seen[1]["if-modified-since"] == "Wed, 01 May 2024 10:00:00 GMT"
    assert second.not_modified and second.articles == [] and second.error is None
    assert second.state.etag == '"v1"'
    assert second.state.last_modified == "Wed, 01 May 2024 10:00:00 GMT"
    assert seen[0]["user-agent"].startswith("newsbot/")
    assert seen[0]["accept-encoding"] == "gzip, deflate"


async def test_redirect_is_followed_and_each_hop_checked() -> None:
    recorder = Recorder(
        {
            FEED_URL: httpx.Response(301, headers={"Location": "/moved"}),
            "https://feeds.example.com/moved": httpx.Response(
                302, headers={"Location": "https://news.example.com/final"}
            ),
            "https://news.example.com/final": rss_response,
        }
    )
    async with mock_client(recorder) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error is None
    assert len(result.articles) == 2
    assert result.state.url == FEED_URL  # the subscription keeps its address
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1/admin", "http://169.254.169.254/latest/", "http://internal.example/"],
)
async def test_redirect_to_internal_address_is_refused_before_contact(target: str) -> None:
    recorder = Recorder({FEED_URL: httpx.Response(302, headers={"Location": target})})
    async with mock_client(recorder) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert recorder.urls == [FEED_URL]  # the internal target was never requested
    assert result.error is not None
    assert result.error.startswith(f"redirect to {target} refused")
    assert result.state.failures == 1


async def test_redirects_are_bounded() -> None:
    routes: dict[str, Route] = {
        f"https://feeds.example.com/r{i}": httpx.Response(
            302, headers={"Location": f"https://feeds.example.com/r{i + 1}"}
        )
        for i in range(10)
    }
    recorder = Recorder(routes)
    limits = FetchLimits(max_redirects=3)
    async with mock_client(recorder) as client:
        state = FeedState("https://feeds.example.com/r0")
        result = await fetch(client, state, limits=limits, now=NOW, resolve=fake_dns)
    assert result.error == "too many redirects (more than 3)"
    assert len(recorder.requests) == 4


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404), "HTTP 404 Not Found"),
        (httpx.Response(500), "HTTP 500 Internal Server Error"),
        (
            httpx.Response(200, content=b"<html><body><p>Hello</p></body></html>"),
            "not a feed",
        ),
        (
            httpx.Response(
                200, headers={"Content-Encoding": "br"}, stream=CountingStream(b"x", chunk=1)
            ),
            "Content-Encoding",
        ),
        (
            httpx.Response(
                200,
                headers={"Content-Encoding": "gzip"},
                stream=CountingStream(b"\x1f\x8b\x08\x00garbage-not-deflate" * 4, chunk=16),
            ),
            "corrupt gzip body",
        ),
    ],
)
async def test_http_problems_become_data(response: httpx.Response, error: str) -> None:
    async with mock_client(Recorder({FEED_URL: response})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error is not None and error in result.error
    assert result.articles == []
    assert result.state.last_error == result.error


async def test_transport_error_and_unsafe_feed_url_become_data() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with mock_client(Recorder({FEED_URL: refuse})) as client:
        broken = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
        unsafe = await fetch(client, FeedState("file:///etc/passwd"), now=NOW, resolve=fake_dns)
    assert broken.error == "ConnectError: connection refused"
    assert unsafe.error is not None and "file:" in unsafe.error


async def test_empty_body_is_a_successful_no_op() -> None:
    async with mock_client(Recorder({FEED_URL: httpx.Response(200, content=b"")})) as client:
        state = FeedState(FEED_URL, failures=2, last_error="old")
        result = await fetch(client, state, now=NOW, resolve=fake_dns)
    assert result.error is None and result.articles == [] and result.bozo is None
    assert result.state.failures == 0 and result.state.last_error is None


# --- back-off -------------------------------------------------------------------------------


def test_backoff_schedule() -> None:
    assert backoff(0, NO_JITTER) == timedelta(0)
    assert [backoff(n, NO_JITTER).total_seconds() for n in range(1, 5)] == [60, 120, 240, 480]
    assert backoff(9, NO_JITTER) == timedelta(seconds=60 * 256)
    assert backoff(10, NO_JITTER) == BACKOFF_CAP == timedelta(hours=6)
    assert backoff(10_000, NO_JITTER) == BACKOFF_CAP
    jittered = backoff(3, lambda: 0.999)
    assert timedelta(seconds=216) <= jittered < timedelta(seconds=240)
    assert backoff(50, lambda: 0.999) <= BACKOFF_CAP


@pytest.mark.reliability
async def test_backoff_grows_and_success_resets() -> None:
    healthy = False

    def handler(request: httpx.Request) -> httpx.Response:
        return rss_response(request) if healthy else httpx.Response(503)

    state = FeedState(FEED_URL)
    delays = []
    async with mock_client(Recorder({FEED_URL: handler})) as client:
        for _ in range(4):
            result = await fetch(client, state, now=NOW, resolve=fake_dns, jitter=NO_JITTER)
            state = result.state
            assert state.next_attempt is not None
            delays.append((state.next_attempt - NOW).total_seconds())
        assert state.failures == 4 and state.last_error == "HTTP 503 Service Unavailable"
        assert not state.due(NOW) and state.due(NOW + timedelta(seconds=480))
        healthy = True
        result = await fetch(client, state, now=NOW, resolve=fake_dns, jitter=NO_JITTER)
    assert delays == [60, 120, 240, 480]
    assert result.error is None and len(result.articles) == 2
    assert (result.state.failures, result.state.last_error, result.state.next_attempt) == (
        0,
        None,
        None,
    )


async def test_retry_after_is_honoured() -> None:
    response = httpx.Response(429, headers={"Retry-After": "900"})
    async with mock_client(Recorder({FEED_URL: response})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.state.next_attempt == NOW + timedelta(seconds=900)


# --- size caps ------------------------------------------------------------------------------


@pytest.mark.reliability
async def test_declared_oversize_body_is_refused_unread() -> None:
    stream = CountingStream(b"x" * 6_000_000, chunk=65_536)
    response = httpx.Response(200, headers={"Content-Length": "6000000"}, stream=stream)
    async with mock_client(Recorder({FEED_URL: response})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error is not None and "Content-Length 6000000 exceeds 5000000" in result.error
    assert stream.served == 0


@pytest.mark.reliability
async def test_undeclared_oversize_body_is_cut_at_the_cap() -> None:
    stream = CountingStream(b"x" * 6_000_000, chunk=65_536)
    async with mock_client(Recorder({FEED_URL: httpx.Response(200, stream=stream)})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error == "body too large: more than 5000000 bytes"
    assert 5_000_000 < stream.served <= 5_000_000 + 65_536


@pytest.mark.reliability
@pytest.mark.parametrize("limits", [FetchLimits(), FetchLimits(max_decompressed_bytes=1_000_000)])
async def test_gzip_bomb_is_cut_early_with_flat_memory(limits: FetchLimits) -> None:
    bomb = shared_file("hostile", "gzip-bomb-50mb.xml.gz").read_bytes()
    stream = CountingStream(bomb, chunk=4096)
    response = httpx.Response(
        200,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
        stream=stream,
    )
    tracemalloc.start()
    try:
        async with mock_client(Recorder({FEED_URL: response})) as client:
            started = time.perf_counter()
            result = await fetch(
                client, FeedState(FEED_URL), limits=limits, now=NOW, resolve=fake_dns
            )
            elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error is not None
    assert f"more than {limits.max_decompressed_bytes} bytes once decompressed" in result.error
    # Cut early: the bomb expands ~1000:1, so only a fraction of its 51 KB is ever read.
    assert stream.served < len(bomb) * limits.max_decompressed_bytes / 50_000_000 + 8192
    # Memory stays at the cap plus fixed overhead, never near the 50 MB expansion.
    assert peak < limits.max_decompressed_bytes * 1.2 + 2_000_000
    assert elapsed < 5
    print(f"bomb: {stream.served} compressed bytes read, peak {peak} B, {elapsed * 1000:.0f} ms")


@pytest.mark.parametrize("encoding", ["gzip", "deflate-zlib", "deflate-raw"])
async def test_compressed_feed_is_decoded(encoding: str) -> None:
    raw = feed_bytes("rss20.xml")
    if encoding == "gzip":
        body, header = gzip.compress(raw), "gzip"
    elif encoding == "deflate-zlib":
        body, header = zlib.compress(raw), "deflate"
    else:
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, header = squeezer.compress(raw) + squeezer.flush(), "deflate"
    stream = CountingStream(body, chunk=7)  # tiny chunks: headers split across reads
    response = httpx.Response(200, headers={"Content-Encoding": header}, stream=stream)
    async with mock_client(Recorder({FEED_URL: response})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error is None
    assert result.articles[0].title == "Truppen & Panzer an der Grenze"


# --- deadlines against a real loopback server -----------------------------------------------


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65_536)
    await asyncio.Event().wait()


async def trickle_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65_536)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n"
    )
    writer.write(b'<rss version="2.0"><channel><title>slow</title>')
    while True:  # one byte every 20 ms: never idle long enough for the read timeout
        await writer.drain()
        writer.write(b" ")
        await asyncio.sleep(0.02)


async def timed_fetch(url: str, limits: FetchLimits) -> tuple[str | None, float]:
    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        result = await fetch(client, FeedState(url), limits=limits, now=NOW, allow_private=True)
        elapsed = time.perf_counter() - started
    assert result.articles == [] and result.state.failures == 1
    return result.error, elapsed


@pytest.mark.reliability
async def test_hanging_host_hits_total_deadline(loopback: Any) -> None:
    url = await loopback(never_answer)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=10, total_timeout=0.3))
    assert error == "total deadline of 0.3 s exceeded"
    assert 0.25 < elapsed < 1.0


@pytest.mark.reliability
async def test_silent_host_hits_read_timeout(loopback: Any) -> None:
    url = await loopback(never_answer)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=0.2, total_timeout=5))
    assert error == "read timeout: no data for 0.2 s"
    assert elapsed < 1.0


@pytest.mark.reliability
async def test_slow_body_hits_total_deadline(loopback: Any) -> None:
    url = await loopback(trickle_body)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=1, total_timeout=0.3))
    assert error == "total deadline of 0.3 s exceeded"
    assert elapsed < 1.0


@pytest.mark.reliability
async def test_unaccepted_connection_hits_connect_timeout() -> None:
    # A listener whose backlog is full drops further SYNs, so connect() hangs like a black hole.
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        limits = FetchLimits(connect_timeout=0.2, total_timeout=5)
        error, elapsed = await timed_fetch(f"http://127.0.0.1:{port}/feed", limits)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert error == "connect timeout after 0.2 s"
    assert elapsed < 1.0


# --- per-host cap ---------------------------------------------------------------------------


@pytest.mark.reliability
async def test_per_host_cap_holds_across_feeds_of_one_host() -> None:
    # Checklist 14: 60 feeds on one host gave 60 concurrent requests before the cap.
    server = FeedServer(latency=0.02)
    async with server.serving(["127.0.0.1", "127.0.0.2"]) as ports, httpx.AsyncClient() as client:
        gate = HostGate(4)
        urls = [f"http://127.0.0.1:{ports['127.0.0.1']}/f{n}" for n in range(60)]
        urls += [f"http://127.0.0.2:{ports['127.0.0.2']}/g{n}" for n in range(10)]
        results = await asyncio.gather(
            *(
                fetch(client, FeedState(url), now=NOW, allow_private=True, hosts=gate)
                for url in urls
            )
        )
    assert all(r.error is None and len(r.articles) == 3 for r in results)
    assert server.peak["127.0.0.1"] == 4  # capped, and the cap is used
    assert server.peak["127.0.0.2"] == 4  # another host has its own slots
    assert gate.peak == {"127.0.0.1": 4, "127.0.0.2": 4}
    assert gate._slots == {}  # idle hosts are forgotten


@pytest.mark.reliability
async def test_job_deadline_covers_waiting_for_the_host() -> None:
    server = FeedServer(behaviours={f"/h{n}": "hang" for n in range(8)})
    async with server.serving(["127.0.0.1"]) as ports, httpx.AsyncClient() as client:
        gate = HostGate(2)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                fetch(
                    client,
                    FeedState(f"http://127.0.0.1:{ports['127.0.0.1']}/h{n}"),
                    now=NOW,
                    allow_private=True,
                    hosts=gate,
                    deadline=0.3,
                )
                for n in range(8)
            )
        )
        elapsed = time.perf_counter() - started
    # Eight hanging feeds, two at a time: still all done at the one 0.3 s budget.
    assert elapsed < 1.0
    assert all(r.error == "total deadline of 0.3 s exceeded" for r in results)
    assert all(r.state.failures == 1 and r.state.next_attempt is not None for r in results)
    assert gate.peak == {"127.0.0.1": 2}  # (the server still counts the abandoned ones)


def test_host_gate_refuses_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HostGate(0)


def test_canonical_url_compares_what_reaches_the_same_feed() -> None:
    same = [
        "http://feeds.example/good",
        "HTTP://Feeds.Example/good",
        "http://feeds.example:80/good?",
        "http://feeds.example/good#top",
        " http://feeds.example/good? ",
    ]
    assert {canonical_url(url) for url in same} == {"http://feeds.example/good"}
    assert canonical_url("https://h.example") == "https://h.example/"
    assert canonical_url("https://h.example:8443/a?Key=X#f") == "https://h.example:8443/a?Key=X"
    # Path, query and credentials are the server's to compare: kept as written.
    assert canonical_url("https://u:Pw@H.example/A?b=1") == "https://u:Pw@h.example/A?b=1"
    assert canonical_url("http://[::1]:80/x") == "http://[::1]/x"
    assert canonical_url("http://h.example:99999/x") == "http://h.example:99999/x"  # left as is
