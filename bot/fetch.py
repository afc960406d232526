"""Fetch feeds and pages over the guarded client: caps, deadlines, back-off, conditional GET."""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot import __version__
from bot.netguard import Resolver, UnsafeURL, check_url, system_resolve

BACKOFF_BASE = timedelta(seconds=60)
BACKOFF_CAP = timedelta(hours=6)
# Jitter only shortens the delay: the cap stays a hard ceiling while failing feeds spread out.
BACKOFF_JITTER = 0.1
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Output is pulled out of zlib in pieces this big, so a tiny bomb never materialises all at once.
_INFLATE_PIECE = 64 * 1024
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
# Someone is waiting for the answer to /sources add: give up sooner than a scheduled poll.
PROBE_DEADLINE = 10.0
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


class FetchError(Exception):
    """A fetch failed in a way that becomes `Download.error` (retry_after from the server)."""

    def __init__(self, message: str, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Time and size bounds for one fetch (all hops and the body together)."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 5_000_000
    max_decompressed_bytes: int = 20_000_000
    max_redirects: int = 5
    user_agent: str = f"newsbot/{__version__} (+https://github.com/newsbot/newsbot)"


@dataclass(frozen=True, slots=True)
class FeedState:
    """What newsbot remembers about one feed between fetches."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt: datetime | None = None
    last_fetched: datetime | None = None

    def due(self, now: datetime) -> bool:
        """Whether back-off allows fetching this feed at `now`."""
        return self.next_attempt is None or now >= self.next_attempt


@dataclass(frozen=True, slots=True)
class Download:
    """The outcome of one conditional GET: the updated state plus the body, or the error as data."""

    state: FeedState
    content: bytes = b""
    headers: Mapping[str, str] | None = None
    not_modified: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Body:
    """One final (non-redirect) response: status, the URL it came from, headers, decoded body."""

    status: int
    url: str
    headers: Mapping[str, str]
    content: bytes


class HostGate:
    """Caps concurrent requests per host name, so many feeds on one site never flood it."""

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._active: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        """Hold one of the host's slots for the duration of the block."""
        host = (urlsplit(url).hostname or "").lower()
        gate = self._slots.get(host)
        if gate is None:
            gate = self._slots[host] = asyncio.Semaphore(self.per_host)
        self._waiting[host] = self._waiting.get(host, 0) + 1
        try:
            async with gate:
                active = self._active[host] = self._active.get(host, 0) + 1
                self.peak[host] = max(self.peak.get(host, 0), active)
                try:
                    yield
                finally:
                    self._active[host] -= 1
        finally:
            # Forget idle hosts: thousands of feeds on distinct hosts must not pile up state.
            self._waiting[host] -= 1
            if not self._waiting[host]:
                del self._waiting[host], self._slots[host], self._active[host]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """The form feed URLs are stored and compared in: `HTTP://H:80/x?#f` is `http://h/x`.

    Scheme and host are lower-cased, a default port, an empty `?` and the fragment dropped; the
    path, query and any credentials are kept as written (servers may tell them apart by case).
    """
    url = url.strip()
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return url  # not a URL we could poll; the fetcher says why, with the URL as given
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host += f":{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@{host}" if at else host
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def backoff(failures: int, jitter: Callable[[], float] = random.random) -> timedelta:
    """Delay before the next attempt after `failures` failures in a row (60 s doubling, 6 h cap)."""
    if failures <= 0:
        return timedelta(0)
    # Exponent capped so huge failure counts cannot overflow timedelta.
    delay = min(BACKOFF_BASE * (1 << min(failures - 1, 32)), BACKOFF_CAP)
    return delay * (1 - BACKOFF_JITTER * jitter())


class _Inflater:
    """Streaming gzip/deflate decoder that never produces more than one piece per step."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._z: Any = None  # chosen on the first bytes: deflate may be zlib-wrapped or raw
        self._head = b""

    def _start(self, data: bytes) -> None:
        if self._encoding == "gzip":
            wbits = 16 + zlib.MAX_WBITS
        elif len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
            wbits = zlib.MAX_WBITS
        else:
            wbits = -zlib.MAX_WBITS  # servers often send raw deflate despite the RFC
        self._z = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield decoded pieces of at most _INFLATE_PIECE bytes for `data`."""
        if self._z is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._start(data)
        while True:
            if self._z.eof:
                # Concatenated gzip members are legal; anything else after the end is ignored.
                rest = self._z.unused_data
                if self._encoding != "gzip" or not rest.startswith(b"\x1f\x8b"):
                    return
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = rest
            piece = self._z.decompress(data, _INFLATE_PIECE)
            data = self._z.unconsumed_tail
            if piece:
                yield piece
            # A full piece may leave output buffered inside zlib even with no input left.
            if not data and len(piece) < _INFLATE_PIECE and not self._z.eof:
                return


async def _read_capped(response: httpx.Response, limits: FetchLimits) -> bytes:
    """The decoded body, aborting as soon as raw or decoded bytes pass their caps."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchError(
            f"body too large: Content-Length {declared} exceeds {limits.max_bytes} bytes"
        )
    if response.is_stream_consumed:
        # Only in-memory responses (httpx.Response(content=...) from a MockTransport) arrive
        # already read and decoded; network responses always stream through the loop below.
        if len(response.content) > limits.max_decompressed_bytes:
            raise FetchError(f"body too large: more than {limits.max_decompressed_bytes} bytes")
        return response.content
    coding = response.headers.get("content-encoding", "").strip().lower()
    inflater: _Inflater | None = None
    if coding in ("gzip", "x-gzip"):
        inflater = _Inflater("gzip")
    elif coding == "deflate":
        inflater = _Inflater("deflate")
    elif coding not in ("", "identity"):
        raise FetchError(f"unsupported Content-Encoding {coding!r}")
    raw = 0
    body = bytearray()
    # aiter_raw leaves decoding to us: httpx's own decoder inflates a whole chunk at once.
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        if raw > limits.max_bytes:
            raise FetchError(f"body too large: more than {limits.max_bytes} bytes")
        pieces: Iterable[bytes] = (chunk,) if inflater is None else inflater.feed(chunk)
        try:
            for piece in pieces:
                body += piece
                if len(body) > limits.max_decompressed_bytes:
                    raise FetchError(
                        f"body too large: more than {limits.max_decompressed_bytes} bytes "
                        f"once decompressed (after {raw} compressed bytes)"
                    )
        except zlib.error as exc:
            raise FetchError(f"corrupt {coding} body: {exc}") from None
    return bytes(body)


def _retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The server's Retry-After as a delay, if it gave a usable one."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=min(int(value), int(BACKOFF_CAP.total_seconds())))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


async def _download(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits,
    allow_private: bool,
    resolve: Resolver,
    headers: Mapping[str, str],
    now: datetime,
) -> Body:
    """GET `url`, following redirects ourselves so every hop passes check_url first."""
    timeout = httpx.Timeout(
        limits.read_timeout,
        connect=limits.connect_timeout,
        pool=limits.connect_timeout,
    )
    request_headers = {
        "User-Agent": limits.user_agent,
        # Only what _Inflater decodes; brotli/zstd would bypass the decompressed-size cap.
        "Accept-Encoding": "gzip, deflate",
        **headers,
    }
    current = url
    for hop in range(limits.max_redirects + 1):
        try:
            await check_url(current, allow_private=allow_private, resolve=resolve)
        except UnsafeURL as exc:
            if hop == 0:
                raise
            raise UnsafeURL(f"redirect to {current} refused: {exc}") from None
        async with client.stream(
            "GET", current, headers=request_headers, timeout=timeout, follow_redirects=False
        ) as response:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                current = str(response.url.join(location))
                continue
            if response.status_code == 304:
                return Body(304, current, dict(response.headers), b"")
            if not 200 <= response.status_code < 300:
                raise FetchError(
                    f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                    _retry_after(response.headers.get("retry-after"), now),
                )
            content = await _read_capped(response, limits)
            return Body(response.status_code, current, dict(response.headers), content)
    raise FetchError(f"too many redirects (more than {limits.max_redirects})")


def _describe(exc: BaseException, limits: FetchLimits, deadline: float) -> str:
    """A short, user-readable description of a network failure."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return f"connect timeout after {limits.connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"read timeout: no data for {limits.read_timeout:g} s"
    if isinstance(exc, TimeoutError):
        return f"total deadline of {deadline:g} s exceeded"
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"


def failed(
    state: FeedState,
    error: str,
    now: datetime,
    jitter: Callable[[], float] = random.random,
    retry_after: timedelta | None = None,
) -> Download:
    """The download outcome for a failure: one more failure in a row, backed off."""
    failures = state.failures + 1
    delay = backoff(failures, jitter)
    if retry_after is not None:
        delay = min(max(delay, retry_after), BACKOFF_CAP)
    new_state = replace(
        state,
        failures=failures,
        last_error=error,
        next_attempt=now + delay,
        last_fetched=now,
    )
    return Download(state=new_state, error=error)


async def get(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits,
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
    headers: Mapping[str, str],
    now: datetime,
    hosts: HostGate | None = None,
    deadline: float | None = None,
) -> Body:
    """GET `url` holding a slot of its host, within the total timeout once the slot is held.

    `deadline` (seconds from now) bounds everything, waiting for the slot included: the budget
    of the job that asks. Raises UnsafeURL, FetchError, httpx errors, TimeoutError and OSError.
    """
    async with asyncio.timeout(None if deadline is None else max(deadline, 0.0)):
        async with hosts.slot(url) if hosts is not None else contextlib.nullcontext():
            async with asyncio.timeout(limits.total_timeout):
                return await _download(
                    client,
                    url,
                    limits=limits,
                    allow_private=allow_private,
                    resolve=resolve,
                    headers=headers,
                    now=now,
                )


async def fetch_feed(
    client: httpx.AsyncClient,
    state: FeedState,
    *,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    allow_private: bool = False,
    now: datetime,
    resolve: Resolver = system_resolve,
    jitter: Callable[[], float] = random.random,
    hosts: HostGate | None = None,
    deadline: float | None = None,
) -> Download:
    """Conditional GET of one feed; network and HTTP problems come back as data, not raised."""
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    conditional: dict[str, str] = {"Accept": FEED_ACCEPT}
    if state.etag:
        conditional["If-None-Match"] = state.etag
    if state.last_modified:
        conditional["If-Modified-Since"] = state.last_modified
    seconds = limits.total_timeout if deadline is None else min(deadline, limits.total_timeout)
    try:
        body = await get(
            client,
            state.url,
            limits=limits,
            allow_private=allow_private,
            resolve=resolve,
            headers=conditional,
            now=now,
            hosts=hosts,
            deadline=deadline,
        )
    except UnsafeURL as exc:
        return failed(state, str(exc), now, jitter)
    except FetchError as exc:
        return failed(state, str(exc), now, jitter, exc.retry_after)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, TimeoutError, OSError) as exc:
        return failed(state, _describe(exc, limits, seconds), now, jitter)

    ok = replace(state, failures=0, last_error=None, next_attempt=None, last_fetched=now)
    if body.status == 304:
        # A 304 may refresh the validators; keep the old ones when it does not.
        ok = replace(
            ok,
            etag=body.headers.get("etag") or state.etag,
            last_modified=body.headers.get("last-modified") or state.last_modified,
        )
        return Download(state=ok, headers=body.headers, not_modified=True)
    ok = replace(ok, etag=body.headers.get("etag"), last_modified=body.headers.get("last-modified"))
    return Download(state=ok, content=body.content, headers=body.headers)


async def fetch_page(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
    hosts: HostGate | None = None,
    deadline: float | None = None,
) -> bytes | None:
    """The body of the web page at `url` (same safety as a feed), or None when unavailable."""
    try:
        body = await get(
            client,
            url,
            limits=limits,
            allow_private=allow_private,
            resolve=resolve,
            headers={"Accept": PAGE_ACCEPT},
            now=datetime.now(UTC),
            hosts=hosts,
            deadline=deadline,
        )
    except (UnsafeURL, FetchError, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError):
        return None
    except (TimeoutError, OSError):
        return None
    if body.status == 304 or not body.content.strip():
        return None
    return body.content


async def probe(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
) -> bytes:
    """Fetch `url` now, following redirects through the guard; raise ValueError saying why not.

    Used when a chat adds a feed, so a public address that redirects inward, or one that does
    not answer, is refused at once with a reason for the user instead of failing later.
    """
    try:
        body = await get(
            client,
            url,
            limits=limits,
            allow_private=allow_private,
            resolve=resolve,
            headers={"Accept": FEED_ACCEPT},
            now=datetime.now(UTC),
            deadline=PROBE_DEADLINE,
        )
    except UnsafeURL:
        raise
    except FetchError as exc:
        raise ValueError(f"cannot fetch {url}: {exc}") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, TimeoutError, OSError) as exc:
        seconds = min(PROBE_DEADLINE, limits.total_timeout)
        raise ValueError(f"cannot fetch {url}: {_describe(exc, limits, seconds)}") from None
    return body.content
