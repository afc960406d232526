"""Parse RSS, Atom and JSON Feed documents (bytes only) into Articles; fetch-and-parse glue."""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urljoin

# feedparser ships no type information.
import feedparser  # type: ignore[import-untyped,unused-ignore]
import feedparser_rs
import httpx

from bot.fetch import (
    BACKOFF_CAP,
    FeedState,
    FetchLimits,
    HostGate,
    backoff,
    failed,
    fetch_feed,
    fetch_page,
)
from bot.fetch import probe as fetch_probe
from bot.lang import detect
from bot.models import Article
from bot.netguard import Resolver, UnsafeURL, check_url, guarded_transport, system_resolve

# Callers import these from bot.feeds for one more release; they live in bot.fetch/bot.netguard.
__all__ = [
    "BACKOFF_CAP",
    "FeedState",
    "FetchLimits",
    "FetchResult",
    "UnsafeURL",
    "backoff",
    "check_url",
    "fetch",
    "full_text",
    "guarded_transport",
    "is_teaser",
    "parse",
    "probe",
]

TEASER_CHARS = 400
# 200 characters after the title: same language as the whole text for all 2,029 corpus articles.
_LANG_SAMPLE = 200
_DEFAULT_LIMITS = FetchLimits()  # frozen, so one shared default is safe
_FUTURE_SLACK = timedelta(days=1)
# The fetch caps bound the document already; the fast parser's own entry cap (10,000 by default)
# would silently drop the tail of a big feed.
_FAST_LIMITS = feedparser_rs.ParserLimits(
    max_feed_size_bytes=1 << 31, max_entries=1_000_000, max_content_blocks=50
)
Parser = Literal["auto", "fast", "feedparser"]

# feedparser resolves an RSS <guid> against the feed URL, so an opaque "1" came back as
# "https://site/1": a different id than feedparser-rs gives for the same entry (it keeps the guid
# as written, which is right). Links and other URI fields are still resolved.
feedparser.mixin._FeedParserMixin.can_be_relative_uri = frozenset(
    feedparser.mixin._FeedParserMixin.can_be_relative_uri - {"id"}
)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one fetch: the updated state plus articles, or the error as data."""

    state: FeedState
    articles: list[Article]
    not_modified: bool = False
    bozo: str | None = None
    error: str | None = None


async def fetch(
    client: httpx.AsyncClient,
    state: FeedState,
    *,
    limits: FetchLimits = _DEFAULT_LIMITS,
    allow_private: bool = False,
    now: datetime,
    resolve: Resolver = system_resolve,
    jitter: Callable[[], float] = random.random,
    hosts: HostGate | None = None,
    deadline: float | None = None,
) -> FetchResult:
    """Fetch and parse one feed; network, HTTP and parse problems come back as data, not raised."""
    now = _aware(now)
    got = await fetch_feed(
        client,
        state,
        limits=limits,
        allow_private=allow_private,
        now=now,
        resolve=resolve,
        jitter=jitter,
        hosts=hosts,
        deadline=deadline,
    )
    if got.error is not None:
        return FetchResult(state=got.state, articles=[], error=got.error)
    if got.not_modified:
        return FetchResult(state=got.state, articles=[], not_modified=True)
    # Parsing is CPU-bound; a thread keeps the loop serving the other feeds meanwhile.
    articles, bozo, recognised = await asyncio.to_thread(
        _parse, got.content, url=state.url, headers=got.headers or {}, now=now
    )
    if not recognised:
        quarantined = failed(state, f"not a feed: {bozo or 'unrecognised format'}", now, jitter)
        return FetchResult(state=quarantined.state, articles=[], error=quarantined.error)
    return FetchResult(state=got.state, articles=articles, bozo=bozo)


async def probe(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = _DEFAULT_LIMITS,
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
) -> None:
    """Raise ValueError with a reason for the user unless `url` serves a feed right now.

    For `/sources add`: the fetch follows every redirect through the SSRF guard, so a public
    address that redirects inward is refused at once instead of failing at the first poll.
    """
    body = await fetch_probe(
        client, url, limits=limits, allow_private=allow_private, resolve=resolve
    )
    _, bozo, recognised = await asyncio.to_thread(
        _parse, body, url=url, headers=None, now=datetime.now(UTC)
    )
    if not recognised:
        raise ValueError(f"{url} is not an RSS, Atom or JSON feed ({bozo or 'unrecognised'})")


def is_teaser(article: Article) -> bool:
    """Whether the article's text looks like a teaser worth replacing with the linked page."""
    text = article.text.strip()
    return len(text) < TEASER_CHARS or text.endswith(("…", "...", "[…]", "[...]"))


async def full_text(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = _DEFAULT_LIMITS,
    allow_private: bool = False,
    resolve: Resolver = system_resolve,
    hosts: HostGate | None = None,
    deadline: float | None = None,
) -> str | None:
    """The main text of the page at `url` (same safety as fetch), or None when unavailable."""
    page = await fetch_page(
        client,
        url,
        limits=limits,
        allow_private=allow_private,
        resolve=resolve,
        hosts=hosts,
        deadline=deadline,
    )
    if page is None:
        return None
    return await asyncio.to_thread(_extract_main_text, page)


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


def _c1_to_cp1252() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x80, 0xA0):
        try:
            table[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            continue
    return table


# "&#146;" means "’" on the web (HTML5 maps C1 character references to windows-1252, and so does
# feedparser); feedparser-rs yields the C1 control itself, which would otherwise be blanked.
_C1 = _c1_to_cp1252()
_C1_FOUND = re.compile("[\x80-\x9f]")


def _clean(text: str, *, keep_lines: bool) -> str:
    """Plain text safe for any renderer: no control chars, no lone surrogates, tidy spaces."""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    if _C1_FOUND.search(text):  # rare; translate() walks the whole string
        text = text.translate(_C1)
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not keep_lines:
        return " ".join(text.split())
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _html_to_text(value: str, *, keep_lines: bool) -> str:
    """Visible text of an HTML fragment, entities decoded."""
    if "<" not in value:
        # No tags: only entities to decode, which is all HTMLParser would do, much slower.
        return _clean(html.unescape(value) if "&" in value else value, keep_lines=keep_lines)
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
        # A guid only promises uniqueness inside its own feed, and feedparser turns an opaque
        # "1" into "https://site/1" (resolved against the feed URL), so two feeds of one site
        # would clash: every guid is scoped to its feed. The same story reported in two feeds
        # is still stored once, by its content hash, and grouped into one story by clustering.
        key = f"guid:{feed_url}\n{guid}"
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
        # The title and the start of the text tell German from English as well as the whole
        # text does; the sample bounds the cost of the undeclared-language feeds.
        lang=lang or detect(f"{title}\n{text[:_LANG_SAMPLE]}"),
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
    """mapping[key] or None, for feedparser's dicts and feedparser-rs's objects alike."""
    if mapping is None:
        return None
    # FeedParserDict.get("updated_parsed") falls back to published_parsed with a
    # DeprecationWarning; the plain dict lookup only sees what the parser really stored.
    if isinstance(mapping, dict):
        return dict.get(mapping, key)
    return getattr(mapping, key, None)


def _link_is_guid(entry: object, link: str, guid: str) -> bool:
    """Whether the parser made `link` out of the guid (feedparser as is, feedparser-rs resolved)."""
    if link == guid:
        return True
    return bool(_field(entry, "guidislink")) and link.rsplit("/", 1)[-1] == guid.rsplit("/", 1)[-1]


def _header_charset(headers: Mapping[str, str]) -> str | None:
    """The charset an HTTP Content-Type declares, lower-cased, or None."""
    for name, value in headers.items():
        if name.lower() == "content-type":
            match = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", value, re.IGNORECASE)
            return match.group(1).lower() if match else None
    return None


_UTF8 = frozenset({"utf-8", "utf8"})


def _needs_fallback(fast: Any, content: bytes, headers: Mapping[str, str]) -> str | None:
    """Why feedparser must parse this document instead of feedparser-rs, or None."""
    # feedparser-rs never sees the HTTP headers: a charset declared there (which overrides the
    # XML declaration, RFC 3023) is only honoured by feedparser, unless both agree on UTF-8.
    declared = _header_charset(headers)
    found = str(_field(fast, "encoding") or "").lower()
    agree = declared == found or (declared in _UTF8 and found in _UTF8)
    if declared is not None and not agree:
        return f"charset {declared} in the HTTP header"
    if found in _UTF8 or not found:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            # feedparser-rs silently turns the bad bytes into U+FFFD; feedparser flags the
            # document (bozo) and reads it as windows-1252, keeping every byte.
            return "not valid UTF-8"
    if not _field(fast, "bozo"):
        return None
    # A bozo document the fast parser recovered (it has a version and readable entries) is
    # kept; one it could not read gets feedparser's more lenient loose parser.
    entries = _field(fast, "entries")
    if not _field(fast, "version") or not entries:
        return "fast parser recovered nothing"
    for entry in entries:
        if not (_field(entry, "title") or _field(entry, "summary") or _field(entry, "content")):
            return "fast parser lost entry fields"
    text = content.lstrip(b"\xef\xbb\xbf")
    if b"<!ENTITY" in text[:4096]:
        # Entity declarations: feedparser's treatment (strip unsafe ones, keep the rest) is the
        # one our hostile-input guarantees were proven with.
        return "DOCTYPE entities"
    return None


def _parse_fast(content: bytes) -> Any:
    # Bytes, never str: a str starting with http:// would make feedparser-rs fetch that URL.
    return feedparser_rs.parse_with_limits(bytes(content), limits=_FAST_LIMITS)


def _parse_slow(content: bytes, url: str, headers: Mapping[str, str]) -> Any:
    wanted = {"content-type", "content-language", "content-location"}
    response_headers = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    response_headers.setdefault("content-location", url)  # base for relative links
    # Without a type feedparser flags every document; application/xml lets it sniff the
    # encoding from the BOM and XML declaration, as it would for a file.
    response_headers.setdefault("content-type", "application/xml")
    # A BytesIO, never bare bytes: feedparser.parse(b"/etc/passwd") opens that path as a file.
    # External entities are off in its SAX parser and it strips unsafe DOCTYPE entities itself.
    return feedparser.parse(io.BytesIO(content), response_headers=response_headers)


def parse_document(
    content: bytes, *, url: str, headers: Mapping[str, str], parser: Parser = "auto"
) -> tuple[Any, str]:
    """The parser's raw result and which parser produced it ("fast" or "feedparser")."""
    if parser == "feedparser":
        return _parse_slow(content, url, headers), "feedparser"
    try:
        fast = _parse_fast(content)
    except Exception:  # a Rust panic or binding error: the fallback still reads the document
        if parser == "fast":
            raise
        return _parse_slow(content, url, headers), "feedparser"
    if parser == "fast" or _needs_fallback(fast, content, headers) is None:
        return fast, "fast"
    return _parse_slow(content, url, headers), "feedparser"


def _bozo_text(parsed: Any) -> str | None:
    if not _field(parsed, "bozo"):
        return None
    exc = _field(parsed, "bozo_exception")
    if exc is None or exc == "":
        return "ill-formed feed"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


def _parse_xml(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    now: datetime,
    parser: Parser = "auto",
) -> tuple[list[Article], str | None, bool]:
    parsed, _ = parse_document(content, url=url, headers=headers, parser=parser)
    bozo = _bozo_text(parsed)
    feed = _field(parsed, "feed") or {}
    feed_lang = _normalise_lang(_field(feed, "language"))
    recognised = bool(_field(parsed, "version")) or bool(_field(parsed, "entries"))
    articles: list[Article] = []
    seen: set[str] = set()
    for entry in _field(parsed, "entries") or []:
        title_detail = _field(entry, "title_detail")
        title = _as_text(_field(entry, "title"), _field(title_detail, "type"), keep_lines=False)
        summary_detail = _field(entry, "summary_detail")
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
        guid = _first_str(_field(entry, "id"))
        link = _first_str(_field(entry, "link"))
        if guid and not _is_web_url(guid) and _link_is_guid(entry, link, guid):
            link = ""  # both parsers turn a "permalink" guid into the link; an opaque one is none
        if link and not _is_web_url(link):
            # feedparser resolves relative links against the feed URL; feedparser-rs only
            # against xml:base or the channel link, so what is still relative is resolved here.
            joined = urljoin(url, link)
            link = joined if _is_web_url(joined) else link
        article = _make_article(
            feed_url=url,
            guid=guid,
            link=link,
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
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None,
    now: datetime,
    parser: Parser = "auto",
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
        return _parse_xml(content, url=url, headers=headers or {}, now=now, parser=parser)
    except Exception as exc:  # a hostile feed must not kill the poll job
        return [], f"parser crashed: {type(exc).__name__}: {exc}", False


def parse(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    now: datetime,
    parser: Parser = "auto",
) -> tuple[list[Article], str | None]:
    """Articles in an RSS, Atom or JSON Feed document, plus the parser's complaint if any.

    `parser` picks feedparser-rs with feedparser as its fallback ("auto"), or one of them alone
    (for the comparison tests and the benchmark).
    """
    articles, bozo, _ = _parse(content, url=url, headers=headers, now=now, parser=parser)
    return articles, bozo
