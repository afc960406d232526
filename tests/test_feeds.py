"""Tests for bot.feeds: safe fetching (SSRF, caps, deadlines, back-off) and robust parsing."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import gzip
import os
import re
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from bot.feeds import (
    BACKOFF_CAP,
    FeedState,
    FetchLimits,
    UnsafeURL,
    _GuardedBackend,
    backoff,
    check_url,
    fetch,
    full_text,
    guarded_transport,
    is_teaser,
    parse,
)
from bot.lang import detect
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


@pytest.fixture(scope="module", autouse=True)
def _warm_language_model() -> None:
    # simplemma loads its dictionaries on first use (~1 s); keep that out of timed assertions.
    detect("warm up")


# --- parsing --------------------------------------------------------------------------------


def test_rss20() -> None:
    articles, bozo = parse(feed_bytes("rss20.xml"), url="https://news.example.com/rss", now=NOW)
    assert bozo is None
    first, second = articles
    assert first.title == "Truppen & Panzer an der Grenze"
    assert first.text == 'Die Armee hat Truppen verlegt.\n\nZweiter Absatz "zitiert".'
    assert first.lang == "de"  # declared de-DE, normalised
    assert first.published == "2024-05-01T06:30:00+00:00"
    assert first.url == "https://news.example.com/a/1"
    assert first.source == "https://news.example.com/rss"
    assert first.id.startswith("feed:") and len(first.id) == 5 + 40
    assert second.url == "https://news.example.com/a/2"
    assert second.published == NOW.isoformat()  # undated: fetch time


def test_rss10() -> None:
    (article,), bozo = parse(feed_bytes("rss10.xml"), url="https://rdf.example.org/rss", now=NOW)
    assert bozo is None
    assert article.title == "Ceasefire talks resume"
    assert article.lang == "en"
    assert article.published == "2024-04-30T06:00:00+00:00"
    assert article.url == "https://rdf.example.org/story/7"


def test_atom() -> None:
    articles, bozo = parse(feed_bytes("atom.xml"), url="https://atom.example.net/feed", now=NOW)
    assert bozo is None
    english, german = articles
    assert english.title == "Shelling reported near the border"
    # The full content wins over the teaser summary; script content never becomes text.
    assert english.text == "Artillery fire was reported overnight.\n\nOfficials said more later."
    assert english.lang == "en"
    assert english.published == "2024-04-29T09:15:00+00:00"
    assert german.lang == "de"  # entry xml:lang overrides the feed's
    assert german.url == "https://atom.example.net/relative/2"  # relative link resolved


def test_json_feed() -> None:
    articles, bozo = parse(feed_bytes("jsonfeed.json"), url="https://json.example.org/f", now=NOW)
    assert bozo == "1 malformed JSON Feed items skipped"
    german, english = articles  # duplicate id "1" dropped
    assert german.title == "Luftangriff gemeldet"
    assert german.text == "Die Regierung meldet Angriffe & Schäden."
    assert german.lang == "de"
    assert german.published == "2024-04-28T10:00:00+00:00"
    assert english.lang == "en"
    assert english.text == "Plain text with <angle brackets> kept literally."
    assert english.published == NOW.isoformat()  # garbage date


def test_ids_are_stable_and_scoped() -> None:
    content = feed_bytes("rss20.xml")
    once, _ = parse(content, url="https://a.example/rss", now=NOW)
    again, _ = parse(content, url="https://a.example/rss", now=NOW + timedelta(hours=1))
    elsewhere, _ = parse(content, url="https://b.example/rss", now=NOW)
    assert [a.id for a in once] == [a.id for a in again]
    # An opaque guid ("beispiel-1") only means something inside its own feed...
    assert once[0].id != elsewhere[0].id
    # ...while the same link is the same story in any feed.
    assert once[1].id == elsewhere[1].id


def test_id_falls_back_to_title_and_text() -> None:
    doc = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>Only a title</title><description>and text</description></item>
    <item><title>Only a title</title><description>and text</description></item>
    <item></item></channel></rss>"""
    articles, _ = parse(doc, url=FEED_URL, now=NOW)
    assert len(articles) == 1  # identical content deduped, empty item skipped
    assert articles[0].url is None


def test_duplicate_guid_and_garbage_date() -> None:
    doc = b"""<rss version="2.0"><channel><title>Dupes</title>
    <item><title>First</title><guid>same-guid</guid><pubDate>not a date</pubDate></item>
    <item><title>Second</title><guid>same-guid</guid></item>
    <item><title>Far future</title><guid>g2</guid>
      <pubDate>Sat, 01 Jan 2999 00:00:00 GMT</pubDate></item>
    </channel></rss>"""
    articles, _ = parse(doc, url=FEED_URL, now=NOW)
    assert [a.title for a in articles] == ["First", "Far future"]
    assert all(a.published == NOW.isoformat() for a in articles)


@pytest.mark.parametrize("content", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_document_is_a_no_op(content: bytes) -> None:
    assert parse(content.strip(b"\xef\xbb\xbf"), url=FEED_URL, now=NOW) == ([], None)


def test_html_emoji_and_astral_text_is_plain_str() -> None:
    doc = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>I</title>'
        "<item><title>&lt;b&gt;Truppen&lt;/b&gt; an der Grenze *_[`</title>"
        "<description>&lt;script&gt;alert(1)&lt;/script&gt; Soldaten 🪖 𝔄𝔫𝔤𝔯𝔦𝔣𝔣 "
        "&amp;amp; &lt;i&gt;Einmarsch&lt;/i&gt; 1 &amp;lt; 2</description>"
        "<link>javascript:alert(1)</link><guid>g</guid></item></channel></rss>"
    ).encode()
    (article,), _ = parse(doc, url=FEED_URL, now=NOW)
    assert article.title == "Truppen an der Grenze *_[`"
    assert article.text == "Soldaten 🪖 𝔄𝔫𝔤𝔯𝔦𝔣𝔣 & Einmarsch 1 < 2"
    assert "alert" not in article.text
    assert article.url is None  # only http(s) links are kept
    assert_str_fields(article)


def test_feedparser_only_ever_gets_bytes() -> None:
    # feedparser.parse(b"/etc/passwd") would open that file; a body naming a path must not.
    articles, _ = parse(b"/etc/passwd", url=FEED_URL, now=NOW)
    assert articles == []
    local = FIXTURES / "rss20.xml"
    assert parse(str(local).encode(), url=FEED_URL, now=NOW)[0] == []


def _badinput_files() -> list[Any]:
    folders = ("illformed", "encoding", "entities", "hostile")
    files = [
        f for d in folders if (BADINPUT / d).is_dir() for f in sorted((BADINPUT / d).iterdir())
    ]
    files = [f for f in files if f.suffix != ".gz"]
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{BADINPUT} not found"))]
    return [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in files]


@pytest.mark.parametrize("path", _badinput_files())
def test_badinput_corpus_never_raises(path: Path) -> None:
    articles, _bozo = parse(path.read_bytes(), url="https://bad.example/feed", now=NOW)
    for article in articles:
        assert_str_fields(article)


@pytest.mark.parametrize("name", ["billion-laughs.xml", "xxe-file.xml", "xxe-net.xml"])
def test_entity_attacks_do_not_expand_or_reach_out(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = shared_file("hostile", name).read_bytes()
    opened: list[object] = []
    real_open = builtins.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(file)
        return real_open(file, *args, **kwargs)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parser tried to open a network connection")

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    started = time.perf_counter()
    articles, bozo = parse(content, url="https://bad.example/feed", now=NOW)
    elapsed = time.perf_counter() - started
    monkeypatch.undo()

    assert elapsed < 0.1, f"parse took {elapsed * 1000:.1f} ms"
    assert bozo is not None  # flagged
    assert opened == []
    everything = " ".join(f"{a.title} {a.text}" for a in articles)
    assert "lollol" not in everything  # no expansion
    assert "root:" not in everything  # no file content
    assert len(everything) < 200


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


# --- fetch: conditional GET, redirects, errors as data -------------------------------------


def rss_response(request: httpx.Request, **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=feed_bytes("rss20.xml"),
        headers={"Content-Type": "application/rss+xml; charset=utf-8", **headers},
    )


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


async def test_declared_oversize_body_is_refused_unread() -> None:
    stream = CountingStream(b"x" * 6_000_000, chunk=65_536)
    response = httpx.Response(200, headers={"Content-Length": "6000000"}, stream=stream)
    async with mock_client(Recorder({FEED_URL: response})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error is not None and "Content-Length 6000000 exceeds 5000000" in result.error
    assert stream.served == 0


async def test_undeclared_oversize_body_is_cut_at_the_cap() -> None:
    stream = CountingStream(b"x" * 6_000_000, chunk=65_536)
    async with mock_client(Recorder({FEED_URL: httpx.Response(200, stream=stream)})) as client:
        result = await fetch(client, FeedState(FEED_URL), now=NOW, resolve=fake_dns)
    assert result.error == "body too large: more than 5000000 bytes"
    assert 5_000_000 < stream.served <= 5_000_000 + 65_536


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

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def loopback() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
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


async def test_hanging_host_hits_total_deadline(loopback: Any) -> None:
    url = await loopback(never_answer)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=10, total_timeout=0.3))
    assert error == "total deadline of 0.3 s exceeded"
    assert 0.25 < elapsed < 1.0


async def test_silent_host_hits_read_timeout(loopback: Any) -> None:
    url = await loopback(never_answer)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=0.2, total_timeout=5))
    assert error == "read timeout: no data for 0.2 s"
    assert elapsed < 1.0


async def test_slow_body_hits_total_deadline(loopback: Any) -> None:
    url = await loopback(trickle_body)
    error, elapsed = await timed_fetch(url, FetchLimits(read_timeout=1, total_timeout=0.3))
    assert error == "total deadline of 0.3 s exceeded"
    assert elapsed < 1.0


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


# --- full text ------------------------------------------------------------------------------

ARTICLE_PAGE = (
    "<html><head><title>Page</title><script>var x = 1;</script></head><body>"
    "<nav>Home | World | Sport</nav><article><h1>Truppen an der Grenze</h1>"
    + "".join(
        f"<p>Paragraph {i}: The army moved several units towards the border overnight, "
        "officials said, while negotiators prepared for another round of talks.</p>"
        for i in range(6)
    )
    + "</article><footer>© Example</footer></body></html>"
)


async def test_full_text_extracts_main_text() -> None:
    page = "https://pages.example.com/story"
    response = httpx.Response(200, text=ARTICLE_PAGE, headers={"Content-Type": "text/html"})
    async with mock_client(Recorder({page: response})) as client:
        text = await full_text(client, page, resolve=fake_dns)
    assert text is not None
    assert "Paragraph 5: The army moved" in text
    assert "var x" not in text


async def test_full_text_refuses_internal_redirect() -> None:
    page = "https://pages.example.com/story"
    redirect = httpx.Response(302, headers={"Location": "http://[::1]/"})
    recorder = Recorder({page: redirect})
    async with mock_client(recorder) as client:
        assert await full_text(client, page, resolve=fake_dns) is None
    assert recorder.urls == [page]


def test_is_teaser() -> None:
    article = Article(id="feed:x", title="t", text="Kurz.", lang="de")
    assert is_teaser(article)
    assert not is_teaser(replace(article, text="Lang. " * 100))
    assert is_teaser(replace(article, text="Lang. " * 100 + "[…]"))
