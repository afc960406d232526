"""Question analysis: language, expected answer type and keyword groups with their translations."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bot import dictionary, lemmas
from bot.extract import (
    DATA_DIR,
    FALLBACK_LANG,
    fold,
    is_common_noun,
    is_org_head,
    is_place_noun,
    is_role,
    key_of,
    lang_data,
    languages,
    lemma,
    lexicon,
    skeleton,
)


@dataclass(frozen=True, slots=True)
class Group:
    """One question word and everything it may appear as in an article (lemmas, translations)."""

    surface: str
    keys: frozenset[str]
    weight: float
    entity: bool = False
    place: bool = False


class Frequencies(Protocol):
    """What weighing a question's words needs from an index (every bot.search index has it)."""

    def idfs(self, keys: Iterable[str]) -> dict[str, float]:
        """Inverse document frequencies of several keys at once."""
        ...


@dataclass(frozen=True, slots=True)
class QuestionType:
    """What one kind of question accepts: candidate kinds with their fit, and number units."""

    fits: Mapping[str, float]
    # Unit classes of bot/data/qa/units.toml a number answer must have (any of them).
    units: tuple[str, ...] = ()
    numeric: bool = False


# The one table of question types. A language file's `qtypes` patterns and the head noun of
# "which/what/welche N" pick a row; answering reads only the row.
TYPES: dict[str, QuestionType] = {
    "person": QuestionType({"person": 1.0, "name": 0.75, "org": 0.35}),
    "org": QuestionType({"org": 1.0, "name": 0.85, "person": 0.3}),
    "place": QuestionType({"place": 1.0, "name": 0.45}),
    "time": QuestionType({"time": 1.0}),
    "list": QuestionType({"list": 1.0}),
    "entity": QuestionType({"person": 0.9, "org": 0.9, "name": 0.8, "place": 0.8}),
    "summary": QuestionType({}),
    "number": QuestionType({"number": 1.0}, numeric=True),
    "duration": QuestionType({"number": 1.0}, ("duration",), numeric=True),
    "age": QuestionType({"number": 1.0}, ("age",), numeric=True),
    "money": QuestionType({"number": 1.0}, ("money",), numeric=True),
    "percent": QuestionType({"number": 1.0}, ("percent",), numeric=True),
    "penalty": QuestionType({"number": 1.0}, ("duration",), numeric=True),
}


@dataclass(frozen=True, slots=True)
class Units:
    """Unit words by class (duration, age, money, percent, penalty) and "when" head nouns."""

    classes: Mapping[str, tuple[str, ...]]
    time_nouns: frozenset[str]
    person_nouns: frozenset[str]
    origin_preps: frozenset[str]
    # Gazetteer kind -> folded endings of place head nouns asking for it, regions first.
    place_kinds: tuple[tuple[str, tuple[str, ...]], ...] = ()


@functools.cache
def units() -> Units:
    """bot/data/qa/units.toml, loaded once."""
    with (DATA_DIR / "units.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    time_nouns = frozenset(fold(w) for w in raw.pop("time_nouns"))
    person_nouns = frozenset(fold(w) for w in raw.pop("person_nouns"))
    origin = frozenset(fold(w) for w in raw.pop("origin_preps"))
    kinds = tuple(
        (kind, tuple(fold(w) for w in raw.pop(f"{kind}_nouns")))
        for kind in ("region", "country", "city")
    )
    classes = {k: tuple(fold(w) for w in v) for k, v in raw.items()}
    return Units(classes, time_nouns, person_nouns, origin, kinds)


def asked_place_kind(noun: str) -> str | None:
    """The gazetteer kind a place head noun asks for: "Hafenstadt" -> city, "state" -> None."""
    folded = fold(noun)
    for kind, endings in units().place_kinds:
        if any(folded == e or folded.endswith(e) for e in endings):
            return kind
    return None


def unit_classes(word: str) -> frozenset[str]:
    """The unit classes a (unit) word belongs to: "Jahren" -> duration, "Dollar" -> money."""
    return _unit_classes(fold(word))


@functools.lru_cache(maxsize=50_000)
def _unit_classes(folded: str) -> frozenset[str]:
    return frozenset(
        {
            name
            for name, prefixes in units().classes.items()
            if any(folded.startswith(p) or folded.endswith("-" + p) for p in prefixes)
        }
    )


@dataclass(frozen=True, slots=True)
class Question:
    """A question analysed: language, expected answer type and keyword groups."""

    text: str
    lang: str
    qtype: str
    groups: tuple[Group, ...]
    unit: Group | None = None
    list_noun: str | None = None
    # The head noun of "which/what/welche N": the answer stands next to it ("die Zeitung Danas").
    head: Group | None = None
    # That noun as written, also when it is a word of the matched pattern ("in which town").
    head_word: str | None = None

    @property
    def kind(self) -> QuestionType:
        """This question's row of the type table."""
        return TYPES[self.qtype]


def evident_lang(question: str) -> str | None:
    """The question's language if its words show one of ours; None for "Кто напал на Киев?"."""
    words = [fold(w) for w in re.findall(r"\w+", question)]
    if words:
        for lang in languages():
            if words[0] in lang_data(lang).question_words and words[0] not in ("was",):
                return lang
    known = [(lang, share) for lang, share in lemmas.detect(question, languages()) if lang != "unk"]
    if not known or known[0][1] <= 0 or (len(known) > 1 and known[0][1] == known[1][1]):
        # No word of any of our languages, or a tie ("NATO?"): the question does not say.
        return None
    return known[0][0]


def question_lang(question: str) -> str:
    """The language of a question: from its question word, else from its words."""
    words = [fold(w) for w in re.findall(r"\w+", question)]
    if words:
        for lang in languages():
            if words[0] in lang_data(lang).question_words:
                # "was" and "die" are words in several languages: confirm with the detector.
                if words[0] in ("was",) and len(words) > 2:
                    break
                return lang
    ranked = lemmas.detect(question, languages())
    best = ranked[0][0] if ranked else "unk"
    return best if best in languages() else FALLBACK_LANG


@functools.cache
def _reverse_terms(lang: str) -> dict[str, tuple[str, ...]]:
    """Word (folded lemma or phrase) of `lang` -> the pivot concepts it expresses."""
    out: dict[str, list[str]] = {}
    data = lang_data(lang)
    for concept, words in data.terms.items():
        for word in (*words, *((concept.replace("_", " "),) if lang == "en" else ())):
            out.setdefault(word, []).append(concept)
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def _concept_keys(concept: str) -> frozenset[str]:
    """Keys of every word for a concept in every language (multiword: each content word)."""
    keys: set[str] = set()
    for lang in languages():
        for word in lang_data(lang).terms.get(concept, ()):
            # Phrases ("take place") are matched from the question side only: their head
            # words alone ("place") would match far too much.
            if " " not in word:
                keys.add(key_of(word, lang))
                keys.add(skeleton(word))
            else:
                keys.add(skeleton(word.replace(" ", "")))  # matched against joined word pairs
    return frozenset(keys)


def concept_keys(concept: str) -> frozenset[str]:
    """The keys of a hand-lexicon concept ("say") in every language."""
    return _concept_keys(concept)


@functools.cache
def _place_keys(idx: int) -> frozenset[str]:
    place = lexicon().places[idx]
    keys: set[str] = set()
    for alias in place.names | place.adjectives:
        words = alias.split()
        keys.add(skeleton(words[-1] if len(words) > 1 else alias))
        for lang in languages():
            keys.add(key_of(alias, lang))
    return frozenset(keys)


@functools.lru_cache(maxsize=50_000)
def inflection_stems(word: str) -> tuple[str, ...]:
    """Skeletons of a word without German case endings (sudanesischen -> sudanesisch)."""
    out = []
    for ending in ("en", "er", "es", "em", "e", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            out.append(skeleton(word[: -len(ending)]))
    return tuple(out)


def _gazetteer_hit(words: list[str], i: int) -> tuple[int, int] | None:
    """A gazetteer entry (name or adjective) starting at words[i] as (index, length)."""
    lex = lexicon()
    for n in (3, 2, 1):
        if i + n > len(words):
            continue
        phrase = " ".join(skeleton(w) for w in words[i : i + n])
        hit = lex.place_by_key.get(phrase)
        if hit:
            return hit[0], n
        if n == 1:
            w = words[i]
            for cand in (
                skeleton(w.rstrip("s")),
                skeleton(lemmas.lemmatize(w, "de")),
                *inflection_stems(w),
            ):
                hit = lex.place_by_key.get(cand)
                if hit:
                    return hit[0], 1
    return None


def analyse(question: str, index: Frequencies | None = None) -> Question:
    """Find a question's language, answer type and keyword groups (translated to all languages)."""
    lang = question_lang(question)
    data = lang_data(lang)
    low = question.strip().lower()
    qtype = "entity"
    # "According to UN estimates, how many ...": the question word may follow a lead-in clause.
    clauses = [low, *(part.strip() for part in low.split(",")[1:])]
    # "In wie vielen Staaten", "From how many nations", "Roughly how many": a preposition or a
    # hedge before the question word does not change what is asked.
    lead = re.findall(r"\S+", low)
    for i in (1, 2):
        if len(lead) > i and fold(lead[i]) in data.question_words:
            clauses.append(" ".join(lead[i:]))
            break
    typed: set[str] = set()  # words of the matched pattern ("how long", "what date") ask, not match
    for pattern, kind in data.qtypes:
        hit = next((m for c in clauses if (m := pattern.search(c))), None)
        if hit is not None:
            qtype = kind
            typed = {fold(w) for w in re.findall(r"[^\W\d_]+", hit.group(0))}
            break
    head_word = _head_noun(question, lang)
    if head_word is not None and qtype in ("entity", "person", "org", "place"):
        qtype = _head_type(head_word, lang) or qtype
    # Possessives are their noun: "Lockett's" -> "Lockett".
    plain = re.sub(r"(?<=\w)['’]s\b", "", question)
    words = re.findall(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:[-'’][\w]+)*", plain)
    folded = [fold(w) for w in words]
    # German separable verbs: "nimmt ... teil" -> "teilnehmen".
    merged: dict[int, str] = {}
    if folded and folded[-1] in data.separable_particles:
        for j in range(len(words) - 2, 0, -1):
            lem = fold(lemmas.lemmatize(words[j], "de")) if lang == "de" else folded[j]
            if not words[j][:1].isupper() and folded[j] not in data.stopwords:
                merged[j] = folded[-1] + lem
                break
    skip = set(data.question_words) | set(data.stopwords) | typed
    groups: list[Group] = []
    unit: Group | None = None
    list_noun: str | None = None
    used: set[int] = set()
    i = 0
    while i < len(words):
        if i in used:
            i += 1
            continue
        word, f = words[i], folded[i]
        # Multi-word concepts first: "take part", "chemical weapons", "defence ministry".
        hit_phrase = None
        for n in (3, 2):
            if i + n <= len(words):
                phrase_words = [fold(lemmas.lemmatize(w, lang)) for w in words[i : i + n]]
                phrase = " ".join(phrase_words)
                raw_phrase = " ".join(folded[i : i + n])
                for cand in (raw_phrase, phrase):
                    if cand in _reverse_terms(lang):
                        hit_phrase = (cand, n)
                        break
            if hit_phrase:
                break
        gaz = _gazetteer_hit(words, i) if word[:1].isupper() or f in ("us", "u.s.") else None
        if gaz is None and f not in skip:
            gaz = _gazetteer_hit(words, i) if len(f) > 3 else None
        if gaz is not None:
            idx, n = gaz
            groups.append(Group(" ".join(words[i : i + n]), _place_keys(idx), 1.0, True, True))
            i += n
            continue
        if hit_phrase is None and lang == "en" and i + 1 < len(words):
            # English two-word terms the dictionary knows ("death toll", "prison term").
            joined = skeleton(words[i] + lemma(words[i + 1], lang))
            if (
                f not in skip
                and folded[i + 1] not in skip
                and not word[:1].isupper()
                and _translations(joined, lang)
            ):
                pair = {joined, key_of(words[i + 1], lang), *_translations(joined, lang)}
                groups.append(Group(" ".join(words[i : i + 2]), frozenset(pair), 1.0))
                i += 2
                continue
        if hit_phrase:
            cand, n = hit_phrase
            keys: set[str] = set()
            for concept in _reverse_terms(lang)[cand]:
                keys |= _concept_keys(concept)
            keys.add(key_of(words[i + n - 1], lang))
            groups.append(Group(" ".join(words[i : i + n]), frozenset(keys), 1.0))
            i += n
            continue
        if f in skip or len(f) < 2 or (i == len(words) - 1 and f in data.separable_particles):
            i += 1
            continue
        lem = merged.get(i) or fold(lemmas.lemmatize(word, lang))
        keys = {skeleton(lem)} if i in merged else {key_of(word, lang), skeleton(lem), skeleton(f)}
        concepts = _reverse_terms(lang).get(lem, ()) + _reverse_terms(lang).get(f, ())
        for concept in concepts:
            keys |= _concept_keys(concept)
        entity = _is_entity_word(word, i, lang)
        if not concepts and not entity:
            # The hand-written news lexicon overrides; other words cross over by the dictionary.
            keys.update(_translations(key_of(word, lang), lang))
            if i in merged:
                keys.update(_translations(skeleton(lem), lang))
        if "-" in word:
            keys.update(key_of(p, lang) for p in word.split("-") if len(p) > 1)
        # "OSZE-Gespräche", "UN-Sondergesandte": the acronym names something the article must
        # mention; the compound it heads is a concept (its parts match common words).
        head = word.split("-", 1)[0]
        acronym_head = (
            "-" in word and head.isupper() and len(head) >= 2 and _gazetteer_hit([head], 0) is None
        )
        groups.append(
            Group(word, frozenset(k for k in keys if k), 1.0, entity and not acronym_head)
        )
        if acronym_head:
            acronym = {key_of(head, lang), skeleton(head)}
            groups.append(Group(head, frozenset(k for k in acronym if k), 1.0, True))
        i += 1
    # The noun right after "how many" is the unit; after "which" the list noun.
    if qtype == "number":
        m = re.search(r"(?:how many|how much|wie ?viele?[nm]?|welche anzahl)\s+([\w-]+)", low)
        if m:
            counted = _counted_noun(question.strip()[m.start(1) :], lang) or m.group(1)
            unit = next(
                (g for g in groups if fold(g.surface.split()[-1]) == fold(counted)),
                None,
            )
    if qtype == "list":
        m = re.search(r"(?:which|what|welche|welchen)\s+([\w-]+)", low)
        list_noun = m.group(1) if m else None
    if index is not None:
        groups = _weighted(groups, index)
    head_group = None
    if head_word is not None:
        head_group = next((g for g in groups if fold(g.surface).endswith(fold(head_word))), None)
        if head_group is not None and qtype != "person":
            # The asked kind ("which party") rarely stands in the answer's sentence: it counts
            # little for coverage and lifts candidates right next to it.
            light = Group(head_group.surface, head_group.keys, head_group.weight * 0.3)
            groups = [light if g is head_group else g for g in groups]
            head_group = light
    return Question(question, lang, qtype, tuple(groups), unit, list_noun, head_group, head_word)


def _counted_noun(rest: str, lang: str) -> str | None:
    """The noun "how many" counts, past its adjectives ("how many right-wing violent crimes"
    -> crimes, "wie viele weitere Mitglieder" -> Mitglieder); None: the word after it."""
    data = lang_data(lang)
    words: list[str] = re.findall(r"[^\W\d_]+(?:-[^\W\d_]+)*", rest)[:6]
    if lang == "de":
        # German nouns are capitalised; the adjectives before them are not.
        return next((w for w in words[:3] if w[:1].isupper()), None)
    # English: the first plural past the adjectives ("jailed opposition leaders"), before the
    # verb ("soldiers died") or a preposition ("people besides the bombers").
    for word in words[:4]:
        if fold(word) in data.stopwords or fold(word) in data.question_words:
            break
        if unit_classes(word) & {"people", "victims"} or (
            word.islower() and len(word) > 3 and word.endswith("s") and not word.endswith("ss")
        ):
            return word  # a word for people ("people", "men") or a plural
    return None


_WHICH = re.compile(
    r"^\s*(?:[^\W\d_]+\s+)?(?:which|what|welche[rsnm]?|was für(?: eine?[nmrs]?)?)\s+(.+)$",
    re.IGNORECASE,
)


# "What is the name of the judge ...", "Wie heißt der Richter ...": the head noun follows.
_NAME_OF = re.compile(
    r"^\s*(?:what|which)\s+(?:is|are|was|were)\s+the\s+names?\s+of\s+(?:the\s+)?(.+)$"
    r"|^\s*wie\s+(?:heißt|heißen|hieß|hießen|lautet|lauten)\s+(?:der|die|das|den)?\s*(.+)$",
    re.IGNORECASE,
)


def _head_noun(question: str, lang: str) -> str | None:
    """The noun a "which/what/welche N" question asks for ("Which Moroccan port city" -> city)."""
    named = _NAME_OF.match(question)
    m = named or _WHICH.match(question)
    if m is None:
        return None
    data = lang_data(lang)
    rest = next(g for g in m.groups() if g is not None)
    words = re.findall(r"[^\W\d_]+(?:-[^\W\d_]+)*", rest)[:4]
    for word in words:
        f = fold(word)
        if (f in data.stopwords and not word.isupper()) or f in data.question_words:
            return None
        if _head_type(word, lang) is not None:
            return str(word)
        # German nouns are capitalised: the first one is the head ("Welches katholische Hilfswerk").
        if lang == "de" and word[:1].isupper():
            return str(word)
    return None


def _head_type(word: str, lang: str) -> str | None:
    """The question type a head noun asks for: person, org, place, time or penalty."""
    lem = lemma(word, lang)
    if lem in units().time_nouns or fold(word) in units().time_nouns:
        return "time"
    if is_role(word, lang) or is_role(lem, lang) or lem in units().person_nouns:
        return "person"
    if "penalty" in unit_classes(lem) and lem not in ("lager", "camp"):
        return "penalty"
    if is_place_noun(word, lang):
        return "place"
    if is_org_head(word, lang) or is_org_head(lem, lang):
        return "org"
    return None


def _translations(key: str, lang: str) -> tuple[str, ...]:
    """A key's translations into every other language (from the DE↔EN dictionary)."""
    return tuple(k for other in languages() for k in dictionary.translate(key, lang, other))


def _is_entity_word(word: str, position: int, lang: str) -> bool:
    """Whether a question word names something (a person, an acronym) rather than a concept."""
    if word.isupper() and len(word) >= 2:
        return True
    if not word[:1].isupper() or position == 0:
        return False
    # German capitalises every noun: only words that are no dictionary noun are names.
    if lang == "de":
        return not is_common_noun(word, lang)
    # English capitalises names of institutions made of common words ("National Guard"); a
    # word the dictionary translates is matched like a concept (across languages, by compound).
    return not _translations(key_of(word.lower(), lang), lang)


def _weighted(groups: list[Group], index: Frequencies) -> list[Group]:
    """Rare words tell more than common ones: an IDF weight, squashed into 0.3..2.

    A group weighs what its most common alias weighs: a concept is as common as its most
    frequent wording, not as rare as an odd spelling or translation of it.
    """
    idf = index.idfs([k for g in groups for k in g.keys])
    out = []
    for g in groups:
        weight = min(2.0, max(0.3, min((idf[k] for k in g.keys), default=0.0) / 4.0))
        out.append(Group(g.surface, g.keys, weight, g.entity, g.place))
    return out
