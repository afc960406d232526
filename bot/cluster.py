"""Story clustering: the same event reported by several sources is one story, alerted once.

Two reports are one story when they are near-copies (title overlap, shared opening shingles)
or when what identifies an event agrees: they appeared within one day of each other and share
its actors and places (proper names, the region labels of the gazetteer, which are the same in
German and English) or a specific number ("12,000" and "12.000" are one number). A different
event in the same place shares the place but neither the other names nor the numbers, or it
happened on another day. Measured on hand-written pairs by benchmarks/stories.py.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import regions as countries
from bot.extract import skeleton
from bot.models import Article

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d[\d.,]*\d|\d")
# A word at the start of a sentence or after a wire dateline is capitalised anyway.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[-–—]\s+|\(\w+\)\s*)(\w+)")
TITLE_JACCARD = 0.6
TEXT_JACCARD = 0.5
WORDS_JACCARD = 0.5
# Same-language reports within the time window that share an actor or place need less overlap.
DAY_JACCARD = 0.15
# Shared names (and share of the shorter list) it takes when a report has no publication time.
UNDATED_NAMES = (3, 0.4)
# Reports of one event appear within a day; the next day's event in that place is another.
WINDOW_HOURS = 24.0
# Shared names it takes (with this share of the shorter list) to call two reports one event.
MIN_SHARED_NAMES = 2
MIN_NAME_SHARE = 0.2
_STEM = 6
_TEXT_CHARS = 1200
# Who, where and how many are in the title and the first sentences of a report.
_EVENT_CHARS = 600
# A key shared by this many known articles (a country in the news all week) finds no event.
_COMMON_KEY = 100
_SKETCH = 8
_SKETCH_NAMES = 10


def _stem(word: str) -> str:
    # German transliterates with s where English writes z: Saporischschja, Zaporizhzhia.
    return skeleton(word).replace("z", "s")[:_STEM]


# Capitalised words that name no actor or place: weekdays, months, agencies.
_NOT_NAMES = frozenset(
    _stem(w)
    for w in [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "montag",
        "dienstag",
        "mittwoch",
        "donnerstag",
        "freitag",
        "samstag",
        "sonntag",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "januar",
        "februar",
        "märz",
        "mai",
        "juni",
        "juli",
        "oktober",
        "dezember",
        "reuters",
        "afp",
        "apa",
        "dpa",
        "ap",
        "the",
    ]
)


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def title_terms(article: Article) -> frozenset[str]:
    """Distinctive title words (4+ letters), case-folded."""
    return frozenset(w for w in _words(article.title) if len(w) >= 4)


def shingles(article: Article) -> frozenset[int]:
    """Hashed word 3-grams of the start of the text: near-duplicates share most of them."""
    words = _words(article.text[:_TEXT_CHARS])
    return frozenset(
        zlib.crc32(" ".join(words[i : i + 3]).encode()) for i in range(max(0, len(words) - 2))
    )


def names(article: Article) -> frozenset[str]:
    """Stems of capitalised words inside sentences: actors, places, organisations."""
    text = f"{article.title}. {article.text}"
    starts = {m.start(1) for m in _SENTENCE_START.finditer(text)}
    # Spelling-tolerant stems: "Wnukowo" and "Vnukovo", "Dschenin" and "Jenin" are one name.
    found = {
        _stem(m.group())
        for m in _WORD.finditer(text)
        if m.group()[0].isupper() and len(m.group()) > 2 and m.start() not in starts
    }
    return frozenset(found - _NOT_NAMES)


def numbers(article: Article) -> frozenset[str]:
    """Specific numbers (two digits or more, years left out), separators removed."""
    found: set[str] = set()
    for match in _NUMBER.findall(f"{article.title} {article.text}"):
        digits = re.sub(r"[.,]", "", match).lstrip("0")
        if len(digits) >= 2 and not (len(digits) == 4 and 1900 <= int(digits) <= 2100):
            found.add(digits)
    return frozenset(found)


def _full(article: Article) -> str:
    return f"{article.title}. {article.place or ''} {article.text}"


def _when(article: Article) -> datetime | None:
    text = article.published or ""
    # A bare month or day ("2022-01") says too little to place a report within a day.
    if len(text) < 13:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Signature:
    """What identifies the event an article reports."""

    lang: str
    title: frozenset[str]
    text: frozenset[int]
    words: frozenset[str]
    names: frozenset[str]
    numbers: frozenset[str]
    regions: frozenset[str]
    country_names: frozenset[str]
    when: datetime | None


@functools.lru_cache(maxsize=20_000)
def signature(article: Article) -> Signature:
    """The event signature of one article (cached: every route compares with recent ones)."""
    # What identifies the event is in the title and the opening; this also bounds the cost.
    article = dataclasses.replace(article, text=article.text[:_EVENT_CHARS])
    codes = frozenset(countries.mentions(_full(article)))
    return Signature(
        lang=article.lang,
        title=title_terms(article),
        text=shingles(article),
        words=frozenset(
            w[:_STEM] for w in _words(f"{article.title} {article.text}") if len(w) >= 5
        ),
        names=names(article),
        numbers=numbers(article),
        # Every country named, as one code in both languages ("Syrien", "Syria").
        regions=codes,
        country_names=frozenset(
            _stem(label)
            for code in codes
            for label in (countries.countries()[code].en, countries.countries()[code].de)
        ),
        when=_when(article),
    )


def _jaccard(a: frozenset[str] | frozenset[int], b: frozenset[str] | frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def same_event(a: Signature, b: Signature, *, use_time: bool = True) -> bool:
    """Whether two reports are about the same event."""
    if len(a.title) >= 3 and _jaccard(a.title, b.title) >= TITLE_JACCARD:
        return True
    if _jaccard(a.text, b.text) >= TEXT_JACCARD:
        return True
    apart = abs((a.when - b.when).total_seconds()) if a.when and b.when else None
    if use_time and apart is not None and apart > WINDOW_HOURS * 3600:
        return False
    # Without publication times the day cannot confirm the event: ask for more evidence.
    dated = use_time and apart is not None
    if a.lang == b.lang and _jaccard(a.words, b.words) >= WORDS_JACCARD:
        return True
    # Names other than the countries: a country in the news names no single event.
    names_a, names_b = a.names - a.country_names, b.names - b.country_names
    shared = len(names_a & names_b)
    shorter = min(len(names_a), len(names_b))
    need, share = (MIN_SHARED_NAMES, MIN_NAME_SHARE) if dated else UNDATED_NAMES
    if shared >= need and shorter and shared / shorter >= share:
        return True
    if dated and shared:
        # Within the day, the same actor or place and the same vocabulary (same language) or,
        # across languages, where no vocabulary is shared, in the same country.
        if a.lang == b.lang and _jaccard(a.words, b.words) >= DAY_JACCARD:
            return True
        if a.lang != b.lang and a.regions & b.regions:
            return True
    # A shared specific number ("12,000 troops") with a shared actor or place (undated: an
    # actor or place more specific than the country).
    anchored = shared or (dated and a.regions & b.regions)
    return bool(a.numbers & b.numbers) and bool(anchored)


class Stories:
    """Known articles indexed by names, places and title words, to find a new one's story."""

    def __init__(self) -> None:
        self._postings: defaultdict[str, list[int]] = defaultdict(list)
        self._entries: list[tuple[str, Signature]] = []

    def add(self, article: Article, story_id: str) -> None:
        """Remember `article` as part of `story_id`."""
        sig = signature(article)
        position = len(self._entries)
        self._entries.append((story_id, sig))
        for key in _keys(sig):
            self._postings[key].append(position)

    def find(self, article: Article) -> str | None:
        """The story `article` reports again, if any."""
        sig = signature(article)
        overlap: defaultdict[int, int] = defaultdict(int)
        for key in _keys(sig):
            postings = self._postings.get(key, ())
            if len(postings) > _COMMON_KEY:
                continue
            for position in postings:
                overlap[position] += 1
        # Most overlapping candidates first; at most a few full comparisons per article.
        for position, _count in heapq.nlargest(30, overlap.items(), key=lambda kv: kv[1]):
            story_id, other = self._entries[position]
            if same_event(sig, other):
                return story_id
        return None


def _keys(sig: Signature) -> list[str]:
    # Title words, names and numbers find candidates; the smallest shingle hashes (a bottom-k
    # sketch) find near-duplicate texts whose titles share no word.
    return (
        [f"t:{term}" for term in sig.title]
        # A bottom-k sketch of the names too: similar name sets share most of it, and an
        # index rebuilt for every batch stays small.
        + [f"n:{name}" for name in sorted(sig.names, key=_crc)[:_SKETCH_NAMES]]
        + [f"#:{number}" for number in sig.numbers]
        + [f"s:{value}" for value in sorted(sig.text)[:_SKETCH]]
    )


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def assign(new: Sequence[Article], known: Sequence[tuple[Article, str]]) -> dict[str, str]:
    """Story id of each new article: an earlier report's story, else the article's own id."""
    stories = Stories()
    new_ids = {a.id for a in new}
    earlier: dict[str, str] = {}
    for article, story_id in known:
        # A changed article is compared with others, never with its own earlier version.
        if article.id not in new_ids:
            stories.add(article, story_id)
        elif story_id != article.id:
            # Already stored as a later report of another story (a new article is stored
            # before it is routed, so its own id says nothing yet).
            earlier[article.id] = story_id
    assigned: dict[str, str] = {}
    for article in new:
        # An edited article keeps its story: the ledger keys alerts by story, so it alerts
        # again only if it newly crosses the threshold.
        story = earlier.get(article.id) or stories.find(article) or article.id
        assigned[article.id] = story
        stories.add(article, story)
    return assigned
