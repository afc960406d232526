"""Story clustering: the same event reported by several sources is one story, alerted once.

Two reports are one story when they are near-copies (title overlap, shared opening shingles)
or when what identifies an event agrees within one day: what happened (the content words of
the title and lead, compared across German and English through the DE↔EN dictionary), who and
where (the names below the country level, spelling- and language-tolerant: "Kiew"/"Kyiv",
"Hisbollah"/"Hezbollah", "Wien"/"Vienna") and how many ("12,000", "12.000" and "twelve
thousand" are one number). The evidence is combined by a four-weight logistic model fitted on
the tune half of benchmarks/story-pairs.jsonl (`benchmarks/stories.py --fit` refits it) and a
merge needs two-to-one odds, because a false merge drops an alert while a missed one only
repeats it. A different event in the same place shares the place but not what happened, or
names other villages, victims and numbers, or happened on another day.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, compress
from operator import itemgetter

from bot import dictionary
from bot import regions as countries
from bot.extract import fold, key_of
from bot.memo import Memo
from bot.models import Article

_WORD = re.compile(r"\w+", re.UNICODE)
# The words a signature reads more closely, found by the regex engine rather than a Python
# loop over every word (each is exactly a whole \w+ run): content words have 5+ letters;
# name candidates start with anything but a digit, "_" or a lower-case Latin letter (a
# superset of the upper-case starts, checked exactly afterwards) and have 3+ characters.
_LONG_WORD = re.compile(r"\w{5,}", re.UNICODE)
_LONGER = 4  # content words have more letters than this (_LONG_WORD's length, as a bound)
_NAME_WORD = re.compile(r"(?<!\w)[^\W\d_a-zß-öø-ÿ]\w{2,}", re.UNICODE)
_TOKEN = re.compile(r"\d[\d.,]*\d|\d|[^\W\d_]+", re.UNICODE)
_DATELINE = re.compile(r"^[^.!?\n]{0,60}?\(\w{2,8}\)\s*[-–—]+\s*")
# A word at the start of a sentence or after a wire dateline is capitalised anyway.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[-–—]\s+|\(\w+\)\s*)(\w+)")
# Near-copies: the same agency re-sending its story with a changed number or sentence.
TITLE_JACCARD = 0.6
TEXT_JACCARD = 0.5
# Reports of one event appear within a day; the next day's event in that place is another.
WINDOW_HOURS = 24.0
# Logistic weights of (content, names, number, time) and the bias, fitted on the tune half of
# benchmarks/story-pairs.jsonl by `benchmarks/stories.py --fit` (L2-regularised, 4 weights).
WEIGHTS = (4.93, 4.52, 1.38, -4.92)
BIAS = -0.76
# A false merge silently drops an alert; a missed merge repeats one. At twice the cost, merge
# only at odds of two to one or better (the Bayes decision for that cost ratio).
MERGE_ODDS = 2.0
_STEM = 6
_TEXT_CHARS = 1200
# Who, where, what and how many are in the title and the first sentences of a report.
_EVENT_CHARS = 600
_CONTENT_LETTERS = 5
# A key shared by this many known articles (a country in the news all week) finds no event;
# its posting list stops growing there, so memory per key is bounded too.
_COMMON_KEY = 100
# Postings read per new article, rarest keys first.
_VISITS = 1_000
# Full comparisons per new article: the known articles sharing the most rare keys.
_CANDIDATES = 30
_SKETCH = 8
# Translations whose spelling is this close to the word are the same name ("Libanon",
# "Lebanon"); a common noun translates to other words ("Angriff", "attack").
_COGNATE = 0.7
_OTHER = {"de": "en", "en": "de"}
# The shortest compound head looked up ("Zins", "Brand"): shorter endings are suffixes.
_HEAD_LETTERS = 4

# Capitalised words that name no actor or place: weekdays, months, agencies.
_NOT_NAMES = frozenset(
    fold(w)
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
        "sonnabend",
        "reuters",
        "afp",
        "apa",
        "dpa",
        "ap",
        "the",
    ]
)
_MONTHS = frozenset(
    fold(w)
    for w in [
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
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "januar",
        "februar",
        "märz",
        "mai",
        "juni",
        "juli",
        "oktober",
        "dezember",
    ]
)
# Number words, so that "twelve thousand", "12,000" and "12.000" are one number.
_UNITS = {
    "en": dict(
        zip(
            [
                "one",
                "two",
                "three",
                "four",
                "five",
                "six",
                "seven",
                "eight",
                "nine",
                "ten",
                "eleven",
                "twelve",
                "thirteen",
                "fourteen",
                "fifteen",
                "sixteen",
                "seventeen",
                "eighteen",
                "nineteen",
            ],
            range(1, 20),
            strict=True,
        ),
        **{
            w: 10 * n
            for n, w in enumerate(
                ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 2
            )
        },
    ),
    "de": dict(
        zip(
            [
                "eins",
                "zwei",
                "drei",
                "vier",
                "funf",
                "sechs",
                "sieben",
                "acht",
                "neun",
                "zehn",
                "elf",
                "zwolf",
                "dreizehn",
                "vierzehn",
                "funfzehn",
                "sechzehn",
                "siebzehn",
                "achtzehn",
                "neunzehn",
            ],
            range(1, 20),
            strict=True,
        ),
        **{
            w: 10 * n
            for n, w in enumerate(
                [
                    "zwanzig",
                    "dreissig",
                    "vierzig",
                    "funfzig",
                    "sechzig",
                    "siebzig",
                    "achtzig",
                    "neunzig",
                ],
                2,
            )
        },
    ),
}
_SCALES = {
    "hundred": 100,
    "thousand": 1_000,
    "million": 1_000_000,
    "millions": 1_000_000,
    "billion": 1_000_000_000,
    "billions": 1_000_000_000,
    "hundert": 100,
    "tausend": 1_000,
    "millionen": 1_000_000,
    "milliarde": 1_000_000_000,
    "milliarden": 1_000_000_000,
}
# Clock times are no event figures.
_AFTER_NUMBER_NOT = frozenset({"uhr", "gmt", "utc"})


def _stem(word: str) -> str:
    # German transliterates with s where English writes z: Saporischschja, Zaporizhzhia.
    return word.replace("z", "s")[:_STEM]


def _words(text: str) -> list[str]:
    return list(map(str.casefold, _WORD.findall(text)))


def title_terms(article: Article) -> frozenset[str]:
    """Distinctive title words (4+ letters), case-folded."""
    return _title_terms(_WORD.findall(article.title))


def _title_terms(title_words: list[str]) -> frozenset[str]:
    return frozenset(w for w in map(str.casefold, title_words) if len(w) >= 4)


def shingles(article: Article) -> frozenset[int]:
    """Hashed word 3-grams of the start of the text: near-duplicates share most of them."""
    return _shingles(_WORD.findall(article.text[:_TEXT_CHARS]))


def _shingles(text_words: list[str]) -> frozenset[int]:
    words = list(map(str.casefold, text_words))
    # map() runs the loop in C: this is a third of a signature's cost otherwise.
    trigrams = map(" ".join, zip(words, words[1:], words[2:], strict=False))
    return frozenset(map(zlib.crc32, map(str.encode, trigrams)))


@functools.lru_cache(maxsize=200_000)
def concepts(word: str, lang: str) -> frozenset[str]:
    """A word's comparison key and its translations' keys: what it means in both languages."""
    key = key_of(word, lang)
    found = dictionary.translate(key, lang, _OTHER.get(lang, "en"))
    if not found and lang == "de":
        # A compound the dictionary lacks means what its head, the longest known ending,
        # means: "Einlagenzins" is a kind of "Zins" (rate), "Waldbrand" a "Brand" (fire).
        # All the endings in one query, longest first: most compounds have none.
        heads = [key[start:] for start in range(2, len(key) - _HEAD_LETTERS + 1)]
        hit = dictionary.first_translated(heads, lang, "en")
        if hit is not None:
            head, found = hit
            return frozenset({key, head, *found})
    return frozenset({key, *found})


@functools.lru_cache(maxsize=200_000)
def _is_name(word: str, lang: str) -> bool:
    """Whether a capitalised word names someone or somewhere rather than being a German noun."""
    if countries.mentions(word):
        return False  # a country in the news names no single event
    key = key_of(word, lang)
    found = dictionary.translate(key, lang, _OTHER.get(lang, "en"))
    if not found:
        # A compound with a known head ("Gasexplosion") is a common noun too.
        return concepts(word, lang) == {key}
    return any(_cognate(key, other) for other in found)


def _cognate(word: str, other: str) -> bool:
    # The cheap upper bounds first: most translations are nowhere near the word's spelling.
    # The first (difflib's real_quick_ratio, from the lengths alone) needs no matcher.
    total = len(word) + len(other)
    if total and 2.0 * min(len(word), len(other)) / total < _COGNATE:
        return False
    matcher = difflib.SequenceMatcher(None, word, other)
    return matcher.quick_ratio() >= _COGNATE and matcher.ratio() >= _COGNATE


def names(article: Article) -> tuple[frozenset[str], ...]:
    """Actors and places below the country level, each as its stems in both languages."""
    text = f"{article.title}. {article.text}"
    starts = {m.start(1) for m in _SENTENCE_START.finditer(text)}
    entries = _name_entries(article.lang)
    found: dict[str, frozenset[str]] = {}
    for match in _NAME_WORD.finditer(text):
        word = match.group()
        if word[0].isupper() and match.start() not in starts:
            entry = entries[word]
            if entry is not None:
                found[entry[0]] = entry[1]
    return tuple(found.values())


_NAME_ENTRIES: dict[str, Memo[tuple[str, frozenset[str]] | None]] = {}


def _name_entries(lang: str) -> Memo[tuple[str, frozenset[str]] | None]:
    """Per word of `lang`: its comparison key and name stems, or None if it names no one."""
    memo = _NAME_ENTRIES.get(lang)
    if memo is None:
        memo = _NAME_ENTRIES[lang] = Memo(functools.partial(_name_entry, lang=lang))
    return memo


def _name_entry(word: str, lang: str) -> tuple[str, frozenset[str]] | None:
    stems = _name_stems(word, lang)
    return (key_of(word, lang), stems) if stems else None


def _name_stems(word: str, lang: str) -> frozenset[str]:
    """A capitalised word's name stems in both languages, or nothing if it names no one."""
    if word.isdigit() or fold(word) in _NOT_NAMES | _MONTHS or not _is_name(word, lang):
        return frozenset()
    # Spelling-tolerant stems: "Wnukowo" and "Vnukovo", "Dschenin" and "Jenin".
    return frozenset(_stem(c) for c in concepts(word, lang))


def _digits(token: str, lang: str) -> float | None:
    # German writes 12.000 and 5,8; English 12,000 and 5.8.
    group, decimal = (".", ",") if lang == "de" else (",", ".")
    if re.fullmatch(rf"\d{{1,3}}(?:{re.escape(group)}\d{{3}})+", token):
        token = token.replace(group, "")
    token = token.replace(group, "").replace(decimal, ".")
    try:
        return float(token)
    except ValueError:
        return None


@functools.lru_cache(maxsize=100_000)
def _spelled(word: str, lang: str) -> float | None:
    """The value of a spelled-out number word ("fourteen", "dreihundertfünfzig"), else None."""
    word = fold(word)
    units = _UNITS.get(lang, _UNITS["en"])
    if word in units:
        return float(units[word])
    if lang != "de" or len(word) < 6:
        return None
    for scale, factor in (("tausend", 1000), ("hundert", 100)):
        left, sep, right = word.partition(scale)
        if sep:
            head = _spelled(left, lang) if left not in ("", "ein") else 1.0
            tail = _spelled(right, lang) if right else 0.0
            return None if head is None or tail is None else head * factor + tail
    left, sep, right = word.partition("und")
    if sep and left in ("ein", *units) and right in units:
        return float(units.get(left, 1) + units[right])
    return None


_VALUES: dict[str, Memo[float | None]] = {}


def _values(lang: str) -> Memo[float | None]:
    """Per token of `lang`: the number it writes or spells, else None."""
    memo = _VALUES.get(lang)
    if memo is None:
        memo = _VALUES[lang] = Memo(functools.partial(_value, lang=lang))
    return memo


def _value(token: str, lang: str) -> float | None:
    return _digits(token, lang) if token[0].isdigit() else _spelled(token, lang)


def numbers(article: Article) -> frozenset[str]:
    """Specific numbers (10 or more, or with a decimal; years, dates, times left out)."""
    tokens = _TOKEN.findall(f"{article.title}. {article.text}")
    values = list(map(_values(article.lang).__getitem__, tokens))
    found: set[str] = set()
    j = 0
    # Only the few tokens that are numbers start one; the rest are looked at as neighbours.
    for i, value in [(k, v) for k, v in enumerate(values) if v is not None]:
        if i < j:
            continue  # part of the number before ("twenty one", "4 billion")
        token = tokens[i]
        j = i + 1
        # "twenty one", "twelve thousand", "4 billion", "90 Milliarden".
        while j < len(tokens):
            nxt = fold(tokens[j])
            if nxt in _SCALES:
                value *= _SCALES[nxt]
            elif (spelled := _spelled(tokens[j], article.lang)) is not None and spelled < value:
                value += spelled
            else:
                break
            j += 1
        before = fold(tokens[i - 1]) if i else ""
        after = fold(tokens[j]) if j < len(tokens) else ""
        is_year = value.is_integer() and 1900 <= value <= 2100 and token.isdigit()
        is_date = before in _MONTHS or after in _MONTHS or after in _AFTER_NUMBER_NOT
        if (value >= 10 or not value.is_integer()) and not is_year and not is_date:
            found.add(f"{value:g}" if not value.is_integer() else str(int(value)))
    return frozenset(found)


def content(article: Article) -> tuple[frozenset[str], ...]:
    """What happened: the longer words of title and lead, each as its concepts in both languages."""
    return _content(set(_LONG_WORD.findall(f"{article.title}. {article.text}")), article.lang)


def _content(words: Iterable[str], lang: str) -> tuple[frozenset[str], ...]:
    """The concepts of the distinct content-length `words`."""
    found = set(map(_content_words(lang).__getitem__, words))
    found.discard(None)
    return tuple(c for c in found if c is not None)


_CONTENT_WORDS: dict[str, Memo[frozenset[str] | None]] = {}


def _content_words(lang: str) -> Memo[frozenset[str] | None]:
    """Per word of `lang`: its concepts if it says what happened, else None."""
    memo = _CONTENT_WORDS.get(lang)
    if memo is None:
        memo = _CONTENT_WORDS[lang] = Memo(functools.partial(_content_word, lang=lang))
    return memo


def _content_word(word: str, lang: str) -> frozenset[str] | None:
    """A word's concepts if it is long enough to say what happened, else None."""
    if len(word) < _CONTENT_LETTERS or not word.isalpha() or fold(word) in _NOT_NAMES:
        return None
    return concepts(word, lang)


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


def _union(groups: tuple[frozenset[str], ...]) -> frozenset[str]:
    return frozenset().union(*groups)


@dataclass(frozen=True, slots=True)
class Signature:
    """What identifies the event an article reports."""

    lang: str
    title: frozenset[str]
    text: frozenset[int]
    content: tuple[frozenset[str], ...]
    vocabulary: frozenset[str]
    names: tuple[frozenset[str], ...]
    name_keys: frozenset[str]
    numbers: frozenset[str]
    when: datetime | None


@functools.lru_cache(maxsize=20_000)
def signature(article: Article) -> Signature:
    """The event signature of one article (cached: every route compares with recent ones)."""
    # What identifies the event is in the title and the opening; this also bounds the cost.
    # The dateline names the agency's bureau ("THE HAGUE (AFP) -"), not where it happened.
    lead = dataclasses.replace(article, text=_DATELINE.sub("", article.text)[:_EVENT_CHARS])
    # Title and lead split into words once, for the title terms, the shingles and the content
    # words alike (the lead is shorter than _TEXT_CHARS; a \w{5,} match is a whole \w+ run).
    title_words, lead_words = _WORD.findall(article.title), _WORD.findall(lead.text)
    long_words = set(title_words)
    long_words.update(lead_words)
    found_content = _content(
        compress(long_words, map(_LONGER.__lt__, map(len, long_words))), article.lang
    )
    found_names = names(lead)
    return Signature(
        lang=article.lang,
        title=_title_terms(title_words),
        text=_shingles(lead_words),
        content=found_content,
        vocabulary=_union(found_content),
        names=found_names,
        name_keys=_union(found_names),
        numbers=numbers(lead),
        when=_when(article),
    )


def _jaccard(a: frozenset[str] | frozenset[int], b: frozenset[str] | frozenset[int]) -> float:
    if not (a and b):
        return 0.0
    # The union's size from the intersection's: one new set per comparison, not two.
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def _found(groups: tuple[frozenset[str], ...], other: frozenset[str]) -> int:
    """How many of `groups` share an element with `other`."""
    return len(groups) - sum(map(other.isdisjoint, groups))


def evidence(a: Signature, b: Signature, *, use_time: bool = True) -> tuple[float, ...]:
    """(content, names, number, time) evidence that two reports tell of one event, each 0–1."""
    # What happened: the share of each report's words the other also has (a word counts
    # when one of its concepts is shared), averaged.
    shared = a.vocabulary & b.vocabulary
    said = (
        _found(a.content, shared) / len(a.content) + _found(b.content, shared) / len(b.content)
        if shared
        else 0.0
    ) / 2
    # Who and where: names matched both ways, as a Dice overlap (0 when either names none).
    matched = min(_found(a.names, b.name_keys), _found(b.names, a.name_keys))
    named = 2 * matched / (len(a.names) + len(b.names)) if a.names and b.names else 0.0
    counted = 1.0 if a.numbers & b.numbers else 0.0
    return said, named, counted, _apart(a, b, use_time=use_time)


def _apart(a: Signature, b: Signature, *, use_time: bool) -> float:
    """Time between two reports in windows (1.0 = one day)."""
    # Without both publication times, assume the far edge of the window: ask for more evidence.
    if not (use_time and a.when and b.when):
        return 1.0
    return abs((a.when - b.when).total_seconds()) / (WINDOW_HOURS * 3600)


def odds(features: Sequence[float]) -> float:
    """The fitted odds that reports with this evidence tell of one event."""
    return math.exp(BIAS + sum(w * x for w, x in zip(WEIGHTS, features, strict=True)))


def same_event(a: Signature, b: Signature, *, use_time: bool = True) -> bool:
    """Whether two reports are about the same event."""
    if len(a.title) >= 3 and _jaccard(a.title, b.title) >= TITLE_JACCARD:
        return True
    if _jaccard(a.text, b.text) >= TEXT_JACCARD:
        return True
    if _apart(a, b, use_time=use_time) > 1.0:
        return False  # outside the window: another day's event
    return odds(evidence(a, b, use_time=use_time)) >= MERGE_ODDS


class Stories:
    """Known articles indexed by names, numbers and title words, to find a new one's story."""

    def __init__(self) -> None:
        self._postings: defaultdict[str, list[int]] = defaultdict(list)
        self._entries: list[tuple[str, Signature]] = []

    def add(self, article: Article, story_id: str) -> None:
        """Remember `article` as part of `story_id`."""
        sig = signature(article)
        self.add_signature(sig, lookup_keys(sig), story_id)

    def add_signature(self, sig: Signature, keys: Sequence[str], story_id: str) -> None:
        """Remember an article by its signature and `lookup_keys` as part of `story_id`."""
        position = len(self._entries)
        self._entries.append((story_id, sig))
        for key in keys:
            postings = self._postings[key]
            # Past _COMMON_KEY the key is skipped by find(); no need to keep growing it.
            if len(postings) <= _COMMON_KEY:
                postings.append(position)

    def find(self, article: Article) -> str | None:
        """The story `article` reports again, if any."""
        sig = signature(article)
        return self.find_signature(sig, lookup_keys(sig))

    def find_signature(self, sig: Signature, keys: Sequence[str]) -> str | None:
        """The story of the article with this signature and `lookup_keys`, if any."""
        postings = self._postings
        lists = sorted(map(postings.__getitem__, filter(postings.__contains__, keys)), key=len)
        # Rare keys first (a village, a figure), common ones only while the budget lasts: the
        # work per article is bounded however many articles the index holds.
        taken = []
        budget = _VISITS
        for found in lists:
            if len(found) > min(_COMMON_KEY, budget):
                break
            budget -= len(found)
            taken.append(found)
        overlap = Counter(chain.from_iterable(taken))  # counted in C
        # Most overlapping candidates first (among equals the most recent report); at most a
        # few full comparisons per article. Only those sharing at least as many keys as the
        # _CANDIDATES-th best can be among them: sorting counts alone is cheap.
        items: Iterable[tuple[int, int]] = overlap.items()
        if len(overlap) > _CANDIDATES:
            cut = sorted(overlap.values(), reverse=True)[_CANDIDATES - 1]
            items = compress(items, map(cut.__le__, overlap.values()))
        ranked = sorted(items, key=_SHARED_THEN_RECENT, reverse=True)
        for position, _count in ranked[:_CANDIDATES]:
            story_id, other = self._entries[position]
            if same_event(sig, other):
                return story_id
        return None


# (position, shared keys) -> (shared keys, position): more shared keys first, then the newest.
_SHARED_THEN_RECENT = itemgetter(1, 0)


def lookup_keys(sig: Signature) -> list[str]:
    """The index keys an article is found by: title words, names, numbers, a text sketch."""
    # Title words, names (both languages' stems) and numbers find candidates; the smallest
    # shingle hashes (a bottom-k sketch) find near-duplicate texts whose titles share no word.
    return [
        *map("t:".__add__, sig.title),
        *map("n:".__add__, sig.name_keys),
        *map("#:".__add__, sig.numbers),
        *map("s:{}".format, sorted(sig.text)[:_SKETCH]),
    ]


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
