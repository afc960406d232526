"""Fetch feeds safely (SSRF checks, size caps, deadlines, back-off) and parse them into Articles."""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import json
import random
import re
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

# feedparser ships no type information.
import feedparser  # type: ignore[import-untyped,unused-ignore]
import httpcore
import httpx

from bot import __version__
from bot.lang import detect
from bot.models import Article

Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
"""Turns (host, port) into IP address strings; injectable so tests never touch DNS."""

BACKOFF_BASE = timedelta(seconds=60)
BACKOFF_CAP = timedelta(hours=6)
# Jitter only shortens the delay: the cap stays a hard ceiling while failing feeds spread out.
BACKOFF_JITTER = 0.1
TEASER_CHARS = 400
RESOLVE_TIMEOUT = 10.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Output is pulled out of zlib in pieces this big, so a tiny bomb never materialises all at once.
_INFLATE_PIECE = 64 * 1024
_FUTURE_SLACK = timedelta(days=1)


class UnsafeURL(ValueError):
    """A feed or page address newsbot refuses to fetch; the message says why, for the user."""


class _FetchError(Exception):
    """A fetch failed in a way that becomes `FetchResult.error` (never leaves this module)."""

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
class FetchResult:
    """The outcome of one fetch: the updated state plus articles, or the error as data."""

    state: FeedState
    articles: list[Article]
    not_modified: bool = False
    bozo: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Body:
    status: int
    url: str
    headers: Mapping[str, str]
    content: bytes


# --- address checks -------------------------------------------------------------------------


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve `host` with the event loop's getaddrinfo and return the IP addresses."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address tunnels to, which must pass the same checks."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _forbidden_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why fetching from `ip` is refused, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            kind = _forbidden_kind(inner)
            if kind:
                return kind
    # Order matters only for the wording: the most specific reason first.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private-network"
    # is_global also excludes shared address space (100.64.0.0/10) and other special ranges.
    if not ip.is_global:
        return "non-public"
    return None


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells directly, including legacy decimal/hex/octal IPv4 forms."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UnsafeURL(f"{host!r} is not a valid IPv6 address") from None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    # Resolvers accept "2130706433", "0x7f.1" and "0177.0.0.1" as 127.0.0.1; inet_aton reads
    # them the same way, so these forms cannot sneak past as "host names".
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and re.search(r"\d", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def _public_addresses(
    host: str, port: int, resolve: Resolver
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of `host`, raising UnsafeURL unless every one of them is public."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"{host} is a loopback host; newsbot only fetches public addresses")
    literal = _literal_ip(host)
    if literal is not None:
        addresses: list[str] = [str(literal)]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                addresses = list(await resolve(host, port))
        except (OSError, UnicodeError, TimeoutError) as exc:
            raise UnsafeURL(f"cannot resolve host {host} ({exc or type(exc).__name__})") from None
        if not addresses:
            raise UnsafeURL(f"cannot resolve host {host} (no addresses)")
    checked: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise UnsafeURL(f"{host} resolved to an invalid address {address!r}") from None
        kind = _forbidden_kind(ip)
        if kind:
            shown = host if literal is not None else f"{host} resolves to {ip}, which"
            raise UnsafeURL(f"{shown} is a {kind} address; newsbot only fetches public addresses")
        checked.append(ip)
    return checked


async def check_url(
    url: str, *, allow_private: bool = False, resolve: Resolver = system_resolve
) -> None:
    """Raise UnsafeURL unless `url` is an http(s) address whose every resolved IP is public."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{url!r} is not a valid web address ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise UnsafeURL(f"{url!r} is not a web address: give a full http:// or https:// URL")
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"{scheme}: addresses are not allowed, only http:// and https://")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL(f"{url!r} has no host name")
    if parts.username is not None or parts.password is not None:
        # "http://public.example@10.0.0.1/" style addresses exist mainly to mislead readers.
        raise UnsafeURL("addresses with a user name or password are not allowed")
    if not allow_private:
        await _public_addresses(host, port or (443 if scheme == "https" else 80), resolve)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step, so DNS cannot change between check and connect."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, resolve: Resolver) -> None:
        self._inner = inner
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await _public_addresses(host, port, self._resolve)
        except UnsafeURL as exc:
            raise httpcore.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        # TLS still verifies against the request's host name (SNI), not this address.
        return await self._inner.connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    *, resolve: Resolver = system_resolve, **options: Any
) -> httpx.AsyncHTTPTransport:
    """An httpx transport that connects only to public addresses, checked at connect time."""
    # check_url vets a name before each request, but httpx resolves it again to connect; a
    # DNS-rebinding server can answer "public" first and "10.0.0.1" second. Checking inside
    # the connection pool's network backend closes that gap for every hop.
    transport = httpx.AsyncHTTPTransport(**options)
    pool = transport._pool
    if type(pool) is not httpcore.AsyncConnectionPool:
        raise TypeError("guarded_transport does not support proxies")
    pool._network_backend = _GuardedBackend(pool._network_backend, resolve)
    return transport


# --- fetching -------------------------------------------------------------------------------


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
        raise _FetchError(
            f"body too large: Content-Length {declared} exceeds {limits.max_bytes} bytes"
        )
    if response.is_stream_consumed:
        # Only in-memory responses (httpx.Response(content=...) from a MockTransport) arrive
        # already read and decoded; network responses always stream through the loop below.
        if len(response.content) > limits.max_decompressed_bytes:
            raise _FetchError(f"body too large: more than {limits.max_decompressed_bytes} bytes")
        return response.content
    coding = response.headers.get("content-encoding", "").strip().lower()
    inflater: _Inflater | None = None
    if coding in ("gzip", "x-gzip"):
        inflater = _Inflater("gzip")
    elif coding == "deflate":
        inflater = _Inflater("deflate")
    elif coding not in ("", "identity"):
        raise _FetchError(f"unsupported Content-Encoding {coding!r}")
    raw = 0
    body = bytearray()
    # aiter_raw leaves decoding to us: httpx's own decoder inflates a whole chunk at once.
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        if raw > limits.max_bytes:
            raise _FetchError(f"body too large: more than {limits.max_bytes} bytes")
        pieces: Iterable[bytes] = (chunk,) if inflater is None else inflater.feed(chunk)
        try:
            for piece in pieces:
                body += piece
                if len(body) > limits.max_decompressed_bytes:
                    raise _FetchError(
                        f"body too large: more than {limits.max_decompressed_bytes} bytes "
                        f"once decompressed (after {raw} compressed bytes)"
                    )
        except zlib.error as exc:
            raise _FetchError(f"corrupt {coding} body: {exc}") from None
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
) -> _Body:
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
                return _Body(304, current, dict(response.headers), b"")
            if not 200 <= response.status_code < 300:
                raise _FetchError(
                    f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                    _retry_after(response.headers.get("retry-after"), now),
                )
            content = await _read_capped(response, limits)
            return _Body(response.status_code, current, dict(response.headers), content)
    raise _FetchError(f"too many redirects (more than {limits.max_redirects})")


def _describe(exc: BaseException, limits: FetchLimits) -> str:
    """A short, user-readable description of a network failure."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return f"connect timeout after {limits.connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"read timeout: no data for {limits.read_timeout:g} s"
    if isinstance(exc, TimeoutError):
        return f"total deadline of {limits.total_timeout:g} s exceeded"
    detail = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"


def _failed(
    state: FeedState,
    error: str,
    now: datetime,
    jitter: Callable[[], float],
    retry_after: timedelta | None = None,
) -> FetchResult:
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
    return FetchResult(state=new_state, articles=[], error=error)


async def fetch(
    client: httpx.AsyncClient,
    state: FeedState,
    *,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    allow_private: bool = False,
    now: datetime,
    resolve: Resolver = system_resolve,
    jitter: Callable[[], float] = random.random,
) -> FetchResult:
    """Fetch and parse one feed; network, HTTP and parse problems come back as data, not raised."""
    now = _aware(now)
    conditional: dict[str, str] = {
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
    }
    if state.etag:
        conditional["If-None-Match"] = state.etag
    if state.last_modified:
        conditional["If-Modified-Since"] = state.last_modified
    try:
        async with asyncio.timeout(limits.total_timeout):
            body = await _download(
                client,
                state.url,
                limits=limits,
                allow_private=allow_private,
                resolve=resolve,
                headers=conditional,
                now=now,
            )
    except UnsafeURL as exc:
        return _failed(state, str(exc), now, jitter)
    except _FetchError as exc:
        return _failed(state, str(exc), now, jitter, exc.retry_after)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, TimeoutError, OSError) as exc:
        return _failed(state, _describe(exc, limits), now, jitter)

    ok = replace(state, failures=0, last_error=None, next_attempt=None, last_fetched=now)
    if body.status == 304:
        # A 304 may refresh the validators; keep the old ones when it does not.
        ok = replace(
            ok,
            etag=body.headers.get("etag") or state.etag,
            last_modified=body.headers.get("last-modified") or state.last_modified,
        )
        return FetchResult(state=ok, articles=[], not_modified=True)
    ok = replace(ok, etag=body.headers.get("etag"), last_modified=body.headers.get("last-modified"))
    # feedparser is CPU-bound; a thread keeps the loop serving the other feeds meanwhile.
    articles, bozo, recognised = await asyncio.to_thread(
        _parse, body.content, url=state.url, headers=body.headers, now=now
    )
    if not recognised:
        return _failed(state, f"not a feed: {bozo or 'unrecognised format'}", now, jitter)
    return FetchResult(state=ok, articles=articles, bozo=bozo)


def is_teaser(article: Article) -> bool:
    """Whether the article's text looks like a teaser worth replacing with the linked page."""
    text = article.text.strip()
    return len(text) < TEASER_CHARS or text.endswith(("…", "...", "[…]", "[...]"))


async def full_text(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
) -> str | None:
    """The main text of the page at `url` (same safety as fetch), or None when unavailable."""
    try:
        async with asyncio.timeout(limits.total_timeout):
            body = await _download(
                client,
                url,
                limits=limits,
                allow_private=allow_private,
                resolve=resolve,
                headers={"Accept": "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"},
                now=datetime.now(UTC),
            )
    except (UnsafeURL, _FetchError, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError):
        return None
    except (TimeoutError, OSError):
        return None
    if body.status == 304 or not body.content.strip():
        return None
    return await asyncio.to_thread(_extract_main_text, body.content)


def _extract_main_text(html: bytes) -> str | None:
    # Imported here: trafilatura is slow to import and only needed for teaser feeds.
    import trafilatura

    try:
        text = trafilatura.extract(html, include_comments=False, include_tables=False)
    except Exception:  # hostile pages must not break the poll job
        return None
    if not isinstance(text, str):
        return None
    cleaned = _clean(text, keep_lines=True)
    return cleaned or None


# --- parsing --------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment, with line breaks at block boundaries."""

    _SKIP = frozenset({"script", "style", "template", "head"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
        | {"ul", "ol", "table", "section", "article", "header", "footer", "hr", "figure", "dd"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def _clean(text: str, *, keep_lines: bool) -> str:
    """Plain text safe for any renderer: no control chars, no lone surrogates, tidy spaces."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not keep_lines:
        return " ".join(text.split())
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _html_to_text(value: str, *, keep_lines: bool) -> str:
    """Visible text of an HTML fragment, entities decoded."""
    extractor = _TextExtractor()
    try:
        extractor.feed(value)
        extractor.close()
    except Exception:  # markup is attacker-controlled; fall back to the raw string
        return _clean(value, keep_lines=keep_lines)
    return _clean("".join(extractor.parts), keep_lines=keep_lines)


def _as_text(value: object, content_type: str | None, *, keep_lines: bool) -> str:
    """A field value as plain text, stripping markup unless it is declared plain."""
    if not isinstance(value, str) or not value:
        return ""
    if content_type == "text/plain":
        return _clean(value, keep_lines=keep_lines)
    return _html_to_text(value, keep_lines=keep_lines)


def _normalise_lang(value: object) -> str | None:
    """'de-DE', 'de_at', 'DE' → 'de'; None for anything that is not a language tag."""
    if not isinstance(value, str):
        return None
    primary = re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower()
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _iso(when: datetime | None, now: datetime) -> str:
    """ISO date of `when`, falling back to fetch time for missing or implausible dates."""
    if when is None or when.year < 1970 or when > now + _FUTURE_SLACK:
        when = now
    return _aware(when).astimezone(UTC).isoformat(timespec="seconds")


def _is_web_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _entry_id(feed_url: str, guid: str, link: str, title: str, text: str) -> str | None:
    """Stable article id from guid → link → title+text."""
    if guid:
        # A URL guid names the story everywhere; an opaque one ("1", "post-7") only means
        # something inside its own feed, so it is scoped to the feed to avoid cross-feed clashes.
        key = f"link:{guid}" if _is_web_url(guid) else f"guid:{feed_url}\n{guid}"
    elif link:
        key = f"link:{link}"
    elif title or text:
        key = f"text:{title}\n{text}"
    else:
        return None
    return "feed:" + hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()


def _make_article(
    *,
    feed_url: str,
    guid: str,
    link: str,
    title: str,
    text: str,
    lang: str | None,
    published: datetime | None,
    now: datetime,
) -> Article | None:
    if not title and not text:
        return None
    if not title:
        title = text if len(text) <= 120 else text[:119].rstrip() + "…"
        title = " ".join(title.split())
    article_id = _entry_id(feed_url, guid, link, title, text)
    if article_id is None:
        return None
    return Article(
        id=article_id,
        title=title,
        text=text,
        lang=lang or detect(f"{title}\n{text}"),
        published=_iso(published, now),
        url=link if _is_web_url(link) else None,
        source=feed_url,
    )


def _first_str(*values: object) -> str:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _struct_time_to_datetime(value: object) -> datetime | None:
    # feedparser's *_parsed values are UTC time.struct_time tuples.
    if not isinstance(value, tuple) or len(value) < 6:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _field(mapping: object, key: str) -> Any:
    """mapping[key] or None, bypassing FeedParserDict's aliases."""
    # FeedParserDict.get("updated_parsed") falls back to published_parsed with a
    # DeprecationWarning; the plain dict lookup only sees what the parser really stored.
    return dict.get(mapping, key) if isinstance(mapping, dict) else None


def _parse_xml(
    content: bytes, *, url: str, headers: Mapping[str, str], now: datetime
) -> tuple[list[Article], str | None, bool]:
    wanted = {"content-type", "content-language", "content-location"}
    response_headers = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    response_headers.setdefault("content-location", url)  # base for relative links
    # Without a type feedparser flags every document; application/xml lets it sniff the
    # encoding from the BOM and XML declaration, as it would for a file.
    response_headers.setdefault("content-type", "application/xml")
    # A BytesIO, never bare bytes: feedparser.parse(b"/etc/passwd") opens that path as a file.
    # External entities are off in its SAX parser and it strips unsafe DOCTYPE entities itself.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=response_headers)
    bozo = None
    if _field(parsed, "bozo"):
        exc = _field(parsed, "bozo_exception")
        bozo = f"{type(exc).__name__}: {exc}" if exc is not None else "ill-formed feed"
    feed = _field(parsed, "feed") or {}
    feed_lang = _normalise_lang(_field(feed, "language"))
    recognised = bool(_field(parsed, "version")) or bool(_field(parsed, "entries"))
    articles: list[Article] = []
    seen: set[str] = set()
    for entry in _field(parsed, "entries") or []:
        title_detail = _field(entry, "title_detail") or {}
        title = _as_text(_field(entry, "title"), _field(title_detail, "type"), keep_lines=False)
        summary_detail = _field(entry, "summary_detail") or {}
        text = _as_text(_field(entry, "summary"), _field(summary_detail, "type"), keep_lines=True)
        langs = [_field(summary_detail, "language"), _field(title_detail, "language")]
        for block in _field(entry, "content") or []:
            body = _as_text(_field(block, "value"), _field(block, "type"), keep_lines=True)
            langs.insert(0, _field(block, "language"))
            if len(body) > len(text):
                text = body
        lang = next((n for n in map(_normalise_lang, langs) if n), None) or feed_lang
        published = None
        for key in ("published_parsed", "updated_parsed", "created_parsed"):
            published = _struct_time_to_datetime(_field(entry, key))
            if published is not None:
                break
        article = _make_article(
            feed_url=url,
            guid=_first_str(_field(entry, "id")),
            link=_first_str(_field(entry, "link")),
            title=title,
            text=text,
            lang=lang,
            published=published,
            now=now,
        )
        if article is not None and article.id not in seen:
            seen.add(article.id)
            articles.append(article)
    return articles, bozo, recognised


def _json_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


def _parse_json_feed(
    data: Mapping[str, Any], *, url: str, now: datetime
) -> tuple[list[Article], str | None]:
    feed_lang = _normalise_lang(data.get("language"))
    items = data.get("items")
    if not isinstance(items, list):
        return [], "JSON Feed without an items list"
    articles: list[Article] = []
    seen: set[str] = set()
    complaints = 0
    for item in items:
        if not isinstance(item, dict):
            complaints += 1
            continue
        raw_id = item.get("id")
        guid = str(raw_id).strip() if isinstance(raw_id, str | int) else ""
        text = _first_str(
            _as_text(item.get("content_text"), "text/plain", keep_lines=True),
            _as_text(item.get("content_html"), "text/html", keep_lines=True),
            _as_text(item.get("summary"), "text/plain", keep_lines=True),
        )
        published = _json_date(item.get("date_published")) or _json_date(item.get("date_modified"))
        article = _make_article(
            feed_url=url,
            guid=guid,
            link=_first_str(item.get("url"), item.get("external_url")),
            title=_as_text(item.get("title"), "text/plain", keep_lines=False),
            text=text,
            lang=_normalise_lang(item.get("language")) or feed_lang,
            published=published,
            now=now,
        )
        if article is not None and article.id not in seen:
            seen.add(article.id)
            articles.append(article)
    return articles, (f"{complaints} malformed JSON Feed items skipped" if complaints else None)


def _json_feed(content: bytes) -> Mapping[str, Any] | None:
    """The decoded JSON Feed document, or None when `content` is not one."""
    stripped = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped.startswith(b"{"):
        return None
    try:
        data: object = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("version")
    if isinstance(version, str) and version.startswith("https://jsonfeed.org/version/1"):
        return data
    return None


def _parse(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, now: datetime
) -> tuple[list[Article], str | None, bool]:
    """parse() plus whether the document was recognised as a feed at all."""
    now = _aware(now)
    if not content.strip():
        return [], None, True  # an empty document is a feed with nothing new
    try:
        json_feed = _json_feed(content)
        if json_feed is not None:
            articles, bozo = _parse_json_feed(json_feed, url=url, now=now)
            return articles, bozo, True
        return _parse_xml(content, url=url, headers=headers or {}, now=now)
    except Exception as exc:  # a hostile feed must not kill the poll job
        return [], f"parser crashed: {type(exc).__name__}: {exc}", False


def parse(
    content: bytes, *, url: str, headers: Mapping[str, str] | None = None, now: datetime
) -> tuple[list[Article], str | None]:
    """Articles in an RSS, Atom or JSON Feed document, plus the parser's complaint if any."""
    articles, bozo, _ = _parse(content, url=url, headers=headers, now=now)
    return articles, bozo
