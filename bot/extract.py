"""Information extraction from news articles: sentences, tokens, people, places, times, numbers."""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import dictionary, lemmas
from bot.memo import Memo
from bot.models import Article
from bot.text import sentences

DATA_DIR = Path(__file__).resolve().parent / "data" / "qa"
FALLBACK_LANG = "en"


@dataclass(frozen=True, slots=True)
class Token:
    """One word or number of a sentence, with its comparison key."""

    text: str
    key: str
    cap: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Span:
    """A candidate answer in a sentence: tokens [start, end) of one kind."""

    kind: str  # person, org, place, time, number, list
    text: str
    start: int
    end: int
    role: str | None = None
    unit: str | None = None
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence with its tokens and the candidate answers found in it."""

    text: str
    tokens: tuple[Token, ...]
    spans: tuple[Span, ...]
    keys: frozenset[str]
    # Extra (key, token position) pairs: German separable verbs joined ("kommen ... zusammen").
    extra: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class LangData:
    """The language data of bot/data/qa/<lang>.toml, compiled for lookups."""

    lang: str
    qtypes: tuple[tuple[re.Pattern[str], str], ...]
    question_words: frozenset[str]
    stopwords: frozenset[str]
    roles: tuple[str, ...]
    org_heads: tuple[str, ...]
    place_nouns: tuple[str, ...]
    place_preps: frozenset[str]
    # Prepositions that take a place name without an article ("in Florenz", "nach Graz").
    bare_preps: frozenset[str]
    pronouns: frozenset[str]
    weekdays: tuple[str, ...]
    months: tuple[str, ...]
    relative_times: tuple[str, ...]
    number_words: dict[str, int]
    scale_words: frozenset[str]
    number_fillers: frozenset[str]
    list_joiners: frozenset[str]
    separable_particles: frozenset[str]
    terms: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Place:
    """One gazetteer entry: its names and adjectives in every language, folded."""

    kind: str
    names: frozenset[str]
    adjectives: frozenset[str]
    display: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Language-independent data: the gazetteer and given names."""

    places: tuple[Place, ...]
    place_by_key: dict[str, tuple[int, ...]]
    place_names: frozenset[str]
    multiword_places: tuple[tuple[str, ...], ...]
    given_names: frozenset[str]
    particles: frozenset[str]


def _load_toml(name: str) -> dict[str, Any]:
    with (DATA_DIR / name).open("rb") as fh:
        return tomllib.load(fh)


@functools.lru_cache(maxsize=200_000)
def fold(text: str) -> str:
    """Lower-case `text` and strip accents, so "Österreich" and "osterreich" compare equal."""
    text = text.lower().replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# German and English press transliterate Russian and Arabic names differently
# (Lawrow/Lavrov, Gruschko/Grushko, Netanjahu/Netanyahu); both sides map to one skeleton.
_SKELETON_RULES: tuple[tuple[str, str], ...] = (
    ("dsch", "y"),
    ("tsch", "ch"),
    ("sch", "sh"),
    ("zh", "sh"),
    ("j", "y"),
    ("w", "v"),
    ("ph", "f"),
    ("ck", "k"),
    ("ou", "u"),
)
_DOUBLE = re.compile(r"(.)\1+")


@functools.lru_cache(maxsize=200_000)
def skeleton(word: str) -> str:
    """A spelling-tolerant comparison key for a word (folded, transliteration variants merged)."""
    key = fold(word)
    for old, new in _SKELETON_RULES:
        key = key.replace(old, new)
    return _DOUBLE.sub(r"\1", key)


@functools.lru_cache(maxsize=400_000)
def lemma(word: str, lang: str) -> str:
    """The dictionary form of `word`, folded; numbers and unknown words stay as they are."""
    if lang not in ("de", "en") or not word[:1].isalpha():
        return fold(word)
    # Dictionary lookup plus suffix rules: the full lemmatiser also decomposes unknown
    # compounds, which costs ~50 µs a word and makes indexing the corpus take seconds.
    found = lemmas.lookup(word, lang)
    if found is None and word[:1].isupper():
        found = lemmas.lookup(word.lower(), lang)
    if found is None and lang == "de" and word.endswith("s") and len(word) > 4:
        found = lemmas.lookup(word[:-1], lang)  # genitive: Russlands, Netanyahus
    if found is None:
        found = lemmas.rules(word, lang)
    return fold(found or word)


_KEYS: dict[str, Memo[str]] = {}


def word_keys(lang: str) -> Memo[str]:
    """The comparison keys of words of `lang`, computed once per word (bounded memory)."""
    memo = _KEYS.get(lang)
    if memo is None:
        memo = _KEYS[lang] = Memo(lambda word: skeleton(lemma(word, lang)), limit=500_000)
    return memo


def key_of(word: str, lang: str) -> str:
    """The comparison key of a word: lemma, folded, transliteration-tolerant."""
    return word_keys(lang)[word]


def index_keys(text: str, lang: str) -> Counter[str]:
    """Counts of the comparison keys of a text (words and hyphen parts), for retrieval."""
    words = _WORD.findall(text)
    if "-" in text:
        # Each hyphenated word's parts count too, right after it (keys keep first-seen order).
        words = [
            part
            for word in words
            for part in ([word, *word.split("-")] if "-" in word else (word,))
            if part
        ]
    # Stored articles are indexed by the thousand: the per-word loop runs in C.
    return Counter(map(word_keys(lang).__getitem__, words))


@functools.cache
def lang_data(lang: str) -> LangData:
    """The compiled language data for `lang` (falls back to English for unknown languages)."""
    try:
        raw = _load_toml(f"{lang}.toml")
    except FileNotFoundError:
        raw = _load_toml(f"{FALLBACK_LANG}.toml")

    def words(name: str) -> tuple[str, ...]:
        return tuple(fold(w) for w in raw.get(name, []))

    return LangData(
        lang=str(raw["lang"]),
        qtypes=tuple((re.compile(p, re.IGNORECASE), t) for p, t in raw.get("qtypes", [])),
        question_words=frozenset(words("question_words")),
        stopwords=frozenset(words("stopwords")),
        roles=tuple(sorted(words("roles"), key=len, reverse=True)),
        org_heads=words("org_heads"),
        place_nouns=words("place_nouns"),
        place_preps=frozenset(words("place_preps")),
        bare_preps=frozenset(words("bare_preps")),
        pronouns=frozenset(words("pronouns")),
        weekdays=words("weekdays"),
        months=words("months"),
        relative_times=words("relative_times"),
        number_words={fold(k): int(v) for k, v in raw.get("number_words", {}).items()},
        scale_words=frozenset(words("scale_words")),
        number_fillers=frozenset(words("number_fillers")),
        list_joiners=frozenset(words("list_joiners")),
        separable_particles=frozenset(words("separable_particles")),
        terms={k: tuple(fold(w) for w in v) for k, v in raw.get("terms", {}).items()},
    )


@functools.cache
def languages() -> tuple[str, ...]:
    """The languages that have a data file."""
    found = []
    for entry in DATA_DIR.iterdir():
        name = entry.name
        if name.endswith(".toml") and len(name) == 7:  # "xx.toml": a language file
            found.append(name[:2])
    return tuple(sorted(found))


@functools.cache
def lexicon() -> Lexicon:
    """The gazetteer and name lists, loaded once."""
    raw_places = _load_toml("places.toml")["place"]
    places: list[Place] = []
    by_key: dict[str, list[int]] = {}
    multi: set[tuple[str, ...]] = set()
    for i, entry in enumerate(raw_places):
        names: set[str] = set()
        adjectives: set[str] = set()
        display: dict[str, str] = {}
        for name_key, value in entry.items():
            if name_key == "kind":
                continue
            target = adjectives if name_key.endswith("_adj") else names
            for alias in value:
                target.add(fold(alias))
                if not name_key.endswith("_adj"):
                    display.setdefault(name_key, alias)
        place = Place(str(entry["kind"]), frozenset(names), frozenset(adjectives), display)
        places.append(place)
        for alias in names | adjectives:
            parts = tuple(skeleton(p) for p in _WORD.findall(alias))
            if len(parts) > 1:
                multi.add(parts)
            by_key.setdefault(" ".join(parts), []).append(i)
    raw_names = _load_toml("names.toml")
    return Lexicon(
        places=tuple(places),
        place_by_key={k: tuple(v) for k, v in by_key.items()},
        place_names=frozenset(
            " ".join(skeleton(p) for p in _WORD.findall(n)) for pl in places for n in pl.names
        ),
        multiword_places=tuple(sorted(multi, key=len, reverse=True)),
        given_names=frozenset(skeleton(n) for n in raw_names["given"]),
        particles=frozenset(fold(p) for p in raw_names["particles"]),
    )


_WORD = re.compile(
    r"\d+(?:[.,\u00a0\u202f ]\d{3})+(?:,\d+)?(?![\d])"  # 100.000 / 3,000 / 100 000
    r"|\d+(?:[.,]\d+)?%?"
    r"|(?:[^\W\d_]\.){2,}"  # U.S., U.N.
    r"|[\w]+(?:[-‐'’][\w]+)*",
)


_NAME_PREFIX = re.compile(r"^(?:al|el|ad|as|ar|an|at|bin|ibn|abu)-[A-ZÄÖÜ]")


def tokens(text: str, lang: str) -> tuple[Token, ...]:
    """The words and numbers of `text`, with comparison keys."""
    out = []
    for m in _WORD.finditer(text):
        word, end = m.group(0), m.end()
        if len(word) > 3 and word[-2:] in ("'s", "’s"):
            word, end = word[:-2], end - 2  # English possessive: "Afghanistan's" is Afghanistan
        # "al-Baghdadi", "el-Sisi": an Arabic article before a capitalised name is part of it.
        cap = word[:1].isupper() or _NAME_PREFIX.match(word) is not None
        out.append(Token(word, key_of(word, lang), cap, m.start(), end))
    return tuple(out)


def keys_of(token: Token, lang: str) -> tuple[str, ...]:
    """All keys a token answers to: itself and, for hyphenated compounds, each part."""
    if "-" not in token.text:
        return (token.key,)
    parts = [p for p in token.text.split("-") if p]
    return (token.key, *(key_of(p, lang) for p in parts))


def _ends_with_any(word: str, stems: Iterable[str]) -> str | None:
    for stem in stems:
        if word == stem or (word.endswith(stem) and len(word) - len(stem) >= 2):
            return stem
        if "-" in word and word.rsplit("-", 1)[1] == stem:
            return stem
    return None


@functools.lru_cache(maxsize=100_000)
def is_role(word: str, lang: str) -> bool:
    """Whether `word` is a person's role or title ("Staatssekretär", "US-Botschafterin")."""
    folded = fold(word)
    data = lang_data(lang)
    if folded in data.stopwords:
        return False
    for stem in data.roles:
        if " " in stem:
            continue
        if folded == stem or folded.endswith("-" + stem):
            return True
        # German compounds end in their head: Vizeaußenministerin, UNO-Generalsekretär.
        if lang == "de" and folded.endswith(stem) and len(stem) >= 5:
            return True
    return False


def is_org_head(word: str, lang: str) -> bool:
    """Whether `word` names a kind of organisation ("Gruppe", "Islamistengruppe", "ministry")."""
    folded = fold(word)
    heads = lang_data(lang).org_heads
    if lang == "de":
        return _ends_with_any(folded, heads) is not None
    return folded in heads


def is_place_noun(word: str, lang: str) -> bool:
    """Whether `word` introduces a place name ("Region", "Grenzstadt", "city")."""
    folded = lemma(word, lang)
    nouns = lang_data(lang).place_nouns
    if lang == "de":
        return _ends_with_any(folded, nouns) is not None
    return folded in nouns


@functools.cache
def _vocabulary(lang: str) -> frozenset[str]:
    """Common words of a language from its data file: such words are never names."""
    data = lang_data(lang)
    vocab: set[str] = set(data.stopwords) | set(data.question_words)
    for words in data.terms.values():
        for w in words:
            vocab.update(w.split())
    vocab.update(data.place_nouns, data.org_heads, data.weekdays, data.months, data.roles)
    return frozenset(skeleton(w) for w in vocab)


def place_at(toks: tuple[Token, ...], i: int) -> tuple[int, int] | None:
    """The gazetteer place starting at token i as (gazetteer index, token count), if any."""
    lex = lexicon()
    tok = toks[i]
    if not tok.cap:
        return None
    for parts in _multiword_by_first().get(_place_key(tok), ()):
        n = len(parts)
        if i + n <= len(toks) and all(
            _place_key(toks[i + j]) == parts[j] or skeleton(toks[i + j].text) == parts[j]
            for j in range(1, n)
        ):
            hit = lex.place_by_key.get(" ".join(parts))
            if hit:
                return hit[0], n
    for candidate in _place_keys(tok):
        hit = lex.place_by_key.get(candidate)
        if hit:
            return hit[0], 1
    return None


@functools.cache
def _multiword_by_first() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The gazetteer's multiword places by their first word (longest first), for fast lookups."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for parts in lexicon().multiword_places:
        out.setdefault(parts[0], []).append(parts)
    return {k: tuple(v) for k, v in out.items()}


def _place_key(tok: Token) -> str:
    return skeleton(tok.text)


def _place_keys(tok: Token) -> tuple[str, ...]:
    raw = skeleton(tok.text)
    keys = [raw, tok.key]
    # German genitive: Russlands, Deutschlands.
    if raw.endswith("s") and len(raw) >= 5:
        keys.append(raw[:-1])
    return tuple(keys)


def is_place_name(tok: Token) -> bool:
    """Whether a token is a gazetteer place name (not only an adjective)."""
    lex = lexicon()
    raw = skeleton(tok.text)
    return raw in lex.place_names or skeleton(tok.text.rstrip("s")) in lex.place_names


def _plain_word(tok: Token, lang: str) -> bool:
    """A capitalised word that is no common word, weekday, month, role or org head."""
    if not tok.cap or not tok.text[:1].isalpha():
        return False
    if _NAME_PREFIX.match(tok.text):
        return True
    sk = skeleton(tok.text)
    vocab = _vocabulary(lang)
    if sk in vocab or tok.key in vocab:
        return False
    folded = fold(tok.text)
    data = lang_data(lang)
    if folded in data.weekdays or folded in data.months or folded in data.stopwords:
        return False
    if folded in data.pronouns or folded in data.question_words:
        return False
    if is_role(tok.text, lang) or is_org_head(tok.text, lang):
        return False
    # German adverbs and adjectives capitalised at the start of a sentence lemmatise to lower
    # case; English lemmas are lower case for names too ("Carter" -> "carter").
    if lang != "de":
        return True
    return lemmas.lemmatize(tok.text, lang)[:1].isupper()


@functools.lru_cache(maxsize=100_000)
def _german_noun(word: str) -> bool:
    """Whether a capitalised German word is a dictionary noun or a compound ending in one."""
    if lemmas.is_known(word, "de"):
        return True
    core = word.rsplit("-", 1)[-1]
    for i in range(2, len(core) - 4):
        tail = core[i:].capitalize()
        if lemmas.is_known(tail, "de"):
            return True
    return False


# Abstract German nouns after a bare preposition ("in Ordnung", "aus Sicherheit"): no place.
_ABSTRACT_ENDINGS = ("ung", "heit", "keit", "schaft", "tion", "ität", "nis", "tum", "ismus", "ik")


@functools.lru_cache(maxsize=100_000)
def bare_place_name(word: str) -> bool:
    """Whether a capitalised German word after "in/nach/bei" or a place noun reads as a place.

    simplemma knows many place names as nouns ("Florenz", "Graz"), so the name test rejects
    them; a place is uninflected, has at most two dictionary senses (its exonyms: Genf ->
    Geneva) and does not end in a common noun that has senses ("Lebensgefahr", "Armeeangaben")
    unless that noun names a kind of place ("Eisenstadt", "Kuwait-Stadt").
    """
    if not word[:1].isupper() or (not word.isalpha() and "-" not in word):
        return False
    if lemmas.lemmatize(word, "de") != word or word.lower().endswith(_ABSTRACT_ENDINGS):
        return False
    if len(dictionary.translate(key_of(word, "de"), "de", "en")) > 2:
        return False
    core = word.rsplit("-", 1)[-1]
    tails = [core] if "-" in word else []
    tails += [core[i:].capitalize() for i in range(2, len(core) - 4)]
    for tail in tails:
        if is_place_noun(tail, "de") or place_kind(tail) is not None:
            return True
        if lemmas.is_known(tail, "de") and dictionary.translate(key_of(tail, "de"), "de", "en"):
            return False
    return True


def is_common_noun(word: str, lang: str) -> bool:
    """Whether a capitalised word is a common noun of the language (German nouns, never names)."""
    return lang == "de" and _german_noun(word)


def place_kind(text: str) -> str | None:
    """The gazetteer kind (country, city, region) of a place name, if it is in the gazetteer."""
    lex = lexicon()
    words = text.split()
    for key in (" ".join(skeleton(w) for w in words), skeleton(text.rstrip("s"))):
        hit = lex.place_by_key.get(key)
        if hit:
            return lex.places[hit[0]].kind
    if " " not in text and "-" not in text:
        # "Nordostpolen", "Südfrankreich", "Westeuropa": a part of a known country or region.
        for i in range(3, len(text) - 3):
            tail = text[i:]
            hit = lex.place_by_key.get(skeleton(tail))
            if hit and any(
                lex.places[j].kind in ("country", "region") and fold(tail) in lex.places[j].names
                for j in hit
            ):
                return "region"
    return None


def _looks_like_name(tok: Token, lang: str, given: frozenset[str]) -> bool:
    """Whether a capitalised word can start a name (German nouns are capitalised too)."""
    if not tok.cap or not tok.text[:1].isalpha():
        return False
    if skeleton(tok.text) in given:
        return True
    if not _plain_word(tok, lang):
        return False
    return not (lang == "de" and _german_noun(tok.text))


_PUNCT_GAP = re.compile(r"[^\s-]")


def _glued(text: str, toks: tuple[Token, ...], k: int) -> bool:
    """Whether token k is joined to the one before by a hyphen ("23-jährige")."""
    return k > 0 and text[toks[k - 1].end : toks[k].start] == "-"


_NUMBER = re.compile(r"^\d+(?:[.,\u00a0\u202f ]\d+)*%?$")
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")


def analyse(text: str, lang: str) -> Sentence:
    """Tokenise one sentence and find its candidate answers."""
    toks = tokens(text, lang)
    spans = tuple(_spans(text, toks, lang))
    keys: set[str] = set()
    for tok in toks:
        keys.update(keys_of(tok, lang))
    extra = _separable(text, toks, lang) + _joined(toks, lang)
    keys.update(k for k, _ in extra)
    return Sentence(text, toks, spans, frozenset(keys), extra)


def _joined(toks: tuple[Token, ...], lang: str) -> tuple[tuple[str, int], ...]:
    """Adjacent word pairs as one key ("foreign minister" -> "foreignminister"), for compounds."""
    out: list[tuple[str, int]] = []
    if lang == "de":
        return ()  # German writes these as one word already
    for i in range(len(toks) - 1):
        a, b = toks[i], toks[i + 1]
        if a.text[:1].isalpha() and b.text[:1].isalpha():
            out.append((skeleton(a.text + b.text), i))
            out.append((skeleton(a.text + lemma(b.text, lang)), i))
    return tuple(out)


def _separable(text: str, toks: tuple[Token, ...], lang: str) -> tuple[tuple[str, int], ...]:
    """German verbs split around a clause: "kommen ... zusammen" -> "zusammenkommen"."""
    particles = lang_data(lang).separable_particles
    if not particles:
        return ()
    out: list[tuple[str, int]] = []
    clause_start = 0
    for i, tok in enumerate(toks):
        after = text[tok.end : toks[i + 1].start] if i + 1 < len(toks) else text[tok.end :]
        if fold(tok.text) in particles and not tok.cap and after.strip()[:1] in (",", ".", ";", ""):
            for j in range(clause_start, i):
                verb = toks[j]
                if not verb.cap and verb.text.isalpha():
                    out.append((skeleton(lemma(fold(tok.text) + verb.text, lang)), j))
        if after.strip()[:1] in (",", ".", ";", ":"):
            clause_start = i + 1
    return tuple(out)


def _span_text(text: str, toks: tuple[Token, ...], start: int, end: int) -> str:
    return text[toks[start].start : toks[end - 1].end]


# Endings of German time adjectives glued to a number word ("drei|tägig", "fünf|jährig").
_TIME_ADJECTIVES = ("stundig", "tagig", "wochig", "monatig", "jahrig")


def _number_compound(folded: str, data: LangData) -> str | None:
    """The unit part of a number-word compound ("dreitagigen" -> "tagigen"), else None."""
    for word in sorted(data.number_words, key=len, reverse=True):
        if folded.startswith(word):
            rest = folded[len(word) :]
            return rest if rest.startswith(_TIME_ADJECTIVES) else None
    return None


def _spans(text: str, toks: tuple[Token, ...], lang: str) -> list[Span]:
    data = lang_data(lang)
    lex = lexicon()
    spans: list[Span] = []
    n = len(toks)
    i = 0
    while i < n:
        tok = toks[i]
        folded = fold(tok.text)
        # German number-word compounds: "dreitägigen Besuch", "fünfjährige Haft".
        glued_unit = _number_compound(folded, data) if lang == "de" else None
        if glued_unit is not None:
            spans.append(Span("number", tok.text, i, i + 1, unit=glued_unit))
            i += 1
            continue
        # Numbers with their unit: "100.000 Soldaten", "3,000 troops", "20 Menschen".
        if _NUMBER.match(tok.text) or folded in data.number_words:
            if _YEAR.match(tok.text) and not (i + 1 < n and toks[i + 1].cap and lang == "de"):
                spans.append(Span("time", tok.text, i, i + 1))
            j = i + 1
            while j < n and fold(toks[j].text) in data.scale_words:
                j += 1
            k = j
            while k < n and k - j < 3 and fold(toks[k].text) in data.number_fillers:
                k += 1
            if lang == "de":
                # German adjectives before the counted noun are lower case: "101 entsprechenden
                # Straftaten"; "17 allerdings" has no unit ("23-jährige" is its own unit).
                m = k
                while (
                    m < n
                    and m - k < 2
                    and toks[m].text.islower()
                    and _glued(text, toks, m) is False
                    and fold(toks[m].text) not in data.stopwords
                    and fold(toks[m].text)[-1:] in ("e", "n", "r", "s", "m")
                ):
                    m += 1
                if m < n and m > k and toks[m].cap:
                    k = m
            unit = (
                toks[k].text
                if k < n
                and toks[k].text[:1].isalpha()
                and fold(toks[k].text) not in data.stopwords
                and not _PUNCT_GAP.search(text[toks[k - 1].end : toks[k].start])
                and (lang != "de" or toks[k].cap or _glued(text, toks, k))
                else None
            )
            end = k + 1 if unit else j
            if _NUMBER.match(tok.text) or unit:
                spans.append(Span("number", _span_text(text, toks, i, end), i, end, unit=unit))
            i = j
            continue
        # Times: weekdays (also "Freitagabend"), months with day/year, relative times.
        wd = next((w for w in data.weekdays if folded.startswith(w)), None)
        if wd is not None and len(folded) <= len(wd) + 6:
            start = (
                i - 1 if i > 0 and fold(toks[i - 1].text) in ("am", "on", "seit", "since") else i
            )
            spans.append(Span("time", _span_text(text, toks, start, i + 1), start, i + 1))
            i += 1
            continue
        if folded in data.months:
            start, end = i, i + 1
            if i > 0 and re.match(r"^\d{1,2}\.?$", toks[i - 1].text):
                start = i - 1
            if end < n and re.match(r"^\d{1,4}$", toks[end].text):
                end += 1
                if end < n and _YEAR.match(toks[end].text):
                    end += 1
            spans.append(Span("time", _span_text(text, toks, start, end), start, end))
            i = end
            continue
        if not tok.cap or folded in data.stopwords:
            i += 1  # sentence-initial function words ("Am", "The") start no name
            continue
        # A run of capitalised words (with name particles inside) is a name, a place or an org.
        j = i
        while j < n:
            if j > i and text[toks[j - 1].end : toks[j].start].strip():
                break  # punctuation ends a name: "Smith, Sherman"
            if toks[j].cap and toks[j].text[:1].isalpha():
                j += 1
            elif fold(toks[j].text) in lex.particles and j + 1 < n and toks[j + 1].cap and j > i:
                j += 2
            else:
                break
        spans.extend(_classify_run(text, toks, i, j, lang))
        i = max(j, i + 1)
    spans.extend(_lists(text, toks, spans, lang))
    for phrase in data.relative_times:
        idx = fold(text).find(phrase)
        if idx >= 0 and (idx == 0 or not fold(text)[idx - 1].isalnum()):
            tok_idx = next((t for t, tk in enumerate(toks) if tk.start >= idx), None)
            if tok_idx is not None:
                end_idx = tok_idx + len(phrase.split())
                spans.append(Span("time", text[idx : idx + len(phrase)], tok_idx, end_idx))
    return spans


_HARD_BREAK = re.compile(r"[:;.!?()]")


def _classify_run(text: str, toks: tuple[Token, ...], i: int, j: int, lang: str) -> list[Span]:
    """Split a capitalised run into role words, person names, places and organisations."""
    data = lang_data(lang)
    lex = lexicon()
    out: list[Span] = []
    k = i
    role: str | None = None
    role_start = i
    # A role word just before the run ("die US-Botschafterin ..., Julianne Smith") still counts.
    if i > 0 and is_role(toks[i - 1].text, lang):
        role, role_start = toks[i - 1].text, i - 1
    while k < j:
        tok = toks[k]
        folded = fold(tok.text)
        place = place_at(toks, k)
        if place is not None and (place[1] > 1 or is_place_name(tok)):
            end = min(k + place[1], j) if k + place[1] <= j else k + place[1]
            out.append(Span("place", _span_text(text, toks, k, end), k, end))
            k = end
            role = None
            continue
        if is_role(tok.text, lang):
            role, role_start = tok.text, k
            prefix = tok.text.split("-", 1)[0] if "-" in tok.text else ""
            if len(prefix) >= 2 and prefix.isupper() and place_at((tok,), 0) is None:
                # "SPÖ-Kandidat", "OGH-Präsidentin": the acronym names the person's organisation.
                out.append(Span("org", prefix, k, k + 1))
            k += 1
            continue
        if folded in data.stopwords or folded in data.question_words or folded in data.pronouns:
            k += 1
            continue
        # Take the longest stretch of name-like words.
        m = k
        while m < j and m - k < 4:
            if m > k and fold(toks[m].text) in lex.particles:
                m += 1
                continue
            if m == k and not _looks_like_name(toks[m], lang, lex.given_names):
                break
            if m > k and not _plain_word(toks[m], lang):
                break
            if (
                place_at(toks, m) is not None
                and m > k
                and is_place_name(toks[m])
                and skeleton(toks[k].text) not in lex.given_names
            ):
                break  # "Bamako Mali" are two names; "Yair Golan" is one person
            m += 1
        if m == k:
            # A common (German) noun: may introduce an org or place name that follows.
            if k + 1 < j and is_org_head(tok.text, lang):
                end = k + 2
                while (
                    end < j and end - k < 4 and _looks_like_name(toks[end], lang, lex.given_names)
                ):
                    end += 1
                if _looks_like_name(toks[k + 1], lang, lex.given_names):
                    out.append(Span("org", _span_text(text, toks, k + 1, end), k + 1, end))
                    k = end
                    continue
            if (
                k + 1 < j
                and is_place_noun(tok.text, lang)
                and (
                    _looks_like_name(toks[k + 1], lang, lex.given_names)
                    or (lang == "de" and bare_place_name(toks[k + 1].text))
                )
            ):
                out.append(Span("place", toks[k + 1].text, k + 1, k + 2))
                k += 2
                continue
            if (
                lang == "de"
                and k == i
                and i > 0
                and fold(toks[i - 1].text) in data.bare_preps
                and text[toks[i - 1].end : tok.start] == " "
                and bare_place_name(tok.text)
            ):
                # "in Florenz", "nach Graz": a place name the gazetteer does not know.
                out.append(Span("place", tok.text, k, k + 1))
                k += 1
                continue
            k += 1
            role = None
            continue
        name_start, name_end = k, m
        if role is not None and _HARD_BREAK.search(text[toks[role_start].end : toks[k].start]):
            role = None  # "US-Vertreter: Xi wird ...": a headline's colon ends the role's phrase
        first = skeleton(toks[name_start].text)
        sentence_initial = name_start == 0
        prev = fold(toks[name_start - 1].text) if name_start > 0 else ""
        prev_is_org = (name_start > i and is_org_head(toks[name_start - 1].text, lang)) or (
            name_start == i
            and i > 0
            and is_org_head(toks[i - 1].text, lang)
            and not text[toks[i - 1].end : toks[i].start].strip()
        )
        if role is None and kind_hint_apposition(text, toks, name_start, lang) is not None:
            role, role_start = kind_hint_apposition(text, toks, name_start, lang) or (None, 0)
        words = name_end - name_start
        if first in lex.given_names or (role is not None and role_start == name_start - 1):
            kind = "person"
        elif prev_is_org:
            kind = "org"
        elif role is not None:
            kind = "person"
        elif name_start > 0 and prev in data.place_preps and words == 1:
            kind = "place"
        elif any(is_org_head(t.text, lang) for t in toks[name_start:name_end]) or (
            toks[name_start].text.isupper() and len(toks[name_start].text) >= 2
        ):
            kind = "org"
        elif sentence_initial and lang == "en" and words == 1:
            kind = "name"
        else:
            kind = "name"  # person or org: decided by the question and by coreference
        role_text = None
        if role is not None and kind == "person":
            role_text = (
                role
                if role_start == name_start - 1
                else _span_text(text, toks, role_start, name_start).rstrip(", ")
            )
            if len(role_text) > 60:
                role_text = role
        out.append(
            Span(
                kind, _span_text(text, toks, name_start, name_end), name_start, name_end, role_text
            )
        )
        role = None
        k = name_end
    return out


def kind_hint_apposition(
    text: str, toks: tuple[Token, ...], start: int, lang: str
) -> tuple[str, int] | None:
    """A role in apposition before a name: "die US-Botschafterin beim Bündnis, Julianne Smith"."""
    if start == 0 or text[toks[start - 1].end : toks[start].start].strip() != ",":
        return None
    if lang == "de" and toks[start - 1].text.islower():
        # German nouns are capitalised: "Ein US-Vertreter sagte, Xi ..." ends in a verb, so the
        # clause before the comma is a report, not a role phrase in apposition.
        return None
    for back in range(start - 1, max(-1, start - 7), -1):
        if is_role(toks[back].text, lang):
            return toks[back].text, back
        if back < start - 1 and text[toks[back].end : toks[back + 1].start].strip():
            return None
    return None


def _lists(text: str, toks: tuple[Token, ...], spans: list[Span], lang: str) -> list[Span]:
    """Enumerations of names or places: "Woronesch, Belgorod und Brjansk"."""
    data = lang_data(lang)
    items = sorted(
        (s for s in spans if s.kind in ("place", "name", "org", "person")), key=lambda s: s.start
    )
    out: list[Span] = []
    group: list[Span] = []

    def flush() -> None:
        if len(group) >= 2:
            first, last = group[0], group[-1]
            out.append(
                Span(
                    "list",
                    _span_text(text, toks, first.start, last.end),
                    first.start,
                    last.end,
                    items=tuple(s.text for s in group),
                )
            )

    for span in items:
        if group:
            gap = toks[group[-1].end : span.start]
            between = text[toks[group[-1].end - 1].end : toks[span.start].start]
            ok = (
                all(
                    fold(t.text) in data.list_joiners or fold(t.text) in data.stopwords for t in gap
                )
                and len(gap) <= 2
                and ("," in between or any(fold(t.text) in data.list_joiners for t in gap))
            )
            if not ok:
                flush()
                group = []
        group.append(span)
    flush()
    return out


def analyse_article(article: Article) -> tuple[Sentence, ...]:
    """Every sentence of an article (title first when it has one), analysed."""
    lang = article.lang if article.lang in languages() else FALLBACK_LANG
    texts = []
    if article.title.strip():
        texts.append(article.title.strip())
    texts.extend(sentences(article.text, lang))
    return tuple(analyse(t, lang) for t in texts)


def resolve_person(span: Span, sents: Iterable[Sentence]) -> Span | None:
    """The fullest mention of the person `span` refers to, or None when it is not a person."""
    best: Span | None = span if span.kind == "person" else None
    words = span.text.split()
    last = skeleton(words[-1])
    genitive = skeleton(words[-1][:-1]) if words[-1].endswith("s") else None
    for sent in sents:
        for other in sent.spans:
            if other.kind != "person":
                continue
            other_last = skeleton(other.text.split()[-1])
            if other_last in (last, genitive) and (
                best is None or len(other.text) > len(best.text) or (other.role and not best.role)
            ):
                best = other if best is None or len(other.text) >= len(best.text) else best
                if other.role and best is not other and len(other.text) >= len(best.text):
                    best = other
    return best


def describe_person(span: Span, lang: str) -> str:
    """A person with their role: "Staatssekretär Andreas Michaelis"."""
    if not span.role:
        return span.text
    if "," in span.role or " " in span.role:
        return f"{span.text} ({span.role})"
    return f"{span.role} {span.text}"
