"""Question answering over news articles in German and English: retrieve, extract, or abstain."""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
import numpy as np
import simplemma

from bot.extract import (
    FALLBACK_LANG,
    Sentence,
    Span,
    analyse,
    analyse_article,
    describe_person,
    fold,
    index_keys,
    is_common_noun,
    is_role,
    key_of,
    lang_data,
    languages,
    lexicon,
    place_kind,
    resolve_person,
    skeleton,
)
from bot.models import Answer, Article, SourceRef

# Below this score the evidence is too weak and the answer is None ("the articles don't say").
ABSTAIN_BELOW = 0.34
MAX_ANSWER_CHARS = 300
# How many retrieved articles the store-wide answerer reads.
READ_TOP = 8
# How many BM25 hits are re-ranked by how many question words share one sentence.
RERANK_TOP = 60
# BM25 parameters; b is low because the store mixes 40-word feed items with 500-word articles,
# and full length normalisation would bury every long article; then how much a prior lifts a score.
BM25_K1 = 1.2
BM25_B = 0.3
PRIOR_STRENGTH = 0.25

# A "where" answer prefers specific places; unknown names (villages, regions) count as specific.
PLACE_PREFERENCE: dict[str, float] = {"city": 1.0, "country": 0.9, "region": 0.7}

# Which candidate kinds fit which question type, and how well.
FIT: dict[str, dict[str, float]] = {
    "person": {"person": 1.0, "name": 0.75, "org": 0.35},
    "org": {"org": 1.0, "name": 0.85, "person": 0.3},
    "place": {"place": 1.0, "name": 0.45},
    "time": {"time": 1.0},
    "number": {"number": 1.0},
    "list": {"list": 1.0},
    "entity": {"person": 0.9, "org": 0.9, "name": 0.8, "place": 0.8},
}


@dataclass(frozen=True, slots=True)
class Group:
    """One question word and everything it may appear as in an article (lemmas, translations)."""

    surface: str
    keys: frozenset[str]
    weight: float
    entity: bool = False
    place: bool = False


@dataclass(frozen=True, slots=True)
class Question:
    """A question analysed: language, expected answer type and keyword groups."""

    text: str
    lang: str
    qtype: str
    groups: tuple[Group, ...]
    unit: Group | None = None
    list_noun: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored answer found in one article."""

    text: str
    sentence: str
    score: float
    article_id: str


class Index:
    """An in-memory BM25 index over articles, queried with translated keyword groups."""

    def __init__(self) -> None:
        self._articles: list[Article] = []
        self._by_id: dict[str, int] = {}
        self._lengths: list[int] = []
        self._priors: list[float] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._analysed: dict[str, tuple[Sentence, ...]] = {}
        self._sentence_keys: list[tuple[frozenset[str], ...]] = []
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(
        cls, articles: Iterable[Article], weights: Mapping[str, float] | None = None
    ) -> Index:
        """Index `articles`; `weights` is an optional per-article prior in 0..1 (conflict score)."""
        index = cls()
        weights = weights or {}
        for article in articles:
            index.add(article, weights.get(article.id, 0.0))
        return index

    def add(self, article: Article, weight: float = 0.0) -> None:
        """Add (or replace) one article."""
        if article.id in self._by_id:
            self._remove(article.id)
        lang = _article_lang(article)
        counts: Counter[str] = Counter()
        sentence_keys = []
        for chunk in _SENTENCE_BREAK.split(f"{article.title}\n{article.text}"):
            keys = index_keys(chunk, lang)
            if keys:
                counts.update(keys)
                sentence_keys.append(frozenset(keys))
        doc = len(self._articles)
        self._articles.append(article)
        self._sentence_keys.append(tuple(sentence_keys))
        self._by_id[article.id] = doc
        self._lengths.append(sum(counts.values()))
        self._priors.append(float(weight))
        for key, tf in counts.items():
            self._postings.setdefault(key, []).append((doc, tf))
        self._arrays = None

    def _remove(self, article_id: str) -> None:
        doc = self._by_id[article_id]
        for key, plist in list(self._postings.items()):
            kept = [(d, tf) for d, tf in plist if d != doc]
            if kept:
                self._postings[key] = kept
            else:
                del self._postings[key]
        self._lengths[doc] = 0
        self._sentence_keys[doc] = ()
        self._analysed.pop(article_id, None)
        del self._by_id[article_id]

    def get(self, article_id: str) -> Article | None:
        """The article with this id, if indexed."""
        doc = self._by_id.get(article_id)
        return None if doc is None else self._articles[doc]

    def __len__(self) -> int:
        return len(self._by_id)

    def idf(self, key: str) -> float:
        """Inverse document frequency of a key (BM25 form, never negative)."""
        n = max(len(self._by_id), 1)
        df = len(self._postings.get(key, ()))
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def analysed(self, article: Article) -> tuple[Sentence, ...]:
        """The article's analysed sentences, computed once."""
        cached = self._analysed.get(article.id)
        if cached is None:
            cached = analyse_article(article)
            if article.id in self._by_id:
                self._analysed[article.id] = cached
        return cached

    def search(self, query: str, k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for a query (a question or keywords), best first."""
        return self.search_groups(analyse_question(query, self).groups, k)

    def search_groups(self, groups: Iterable[Group], k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for keyword groups: BM25, one term per group (its best alias)."""
        if not self._by_id:
            return []
        n = len(self._articles)
        lengths = np.asarray(self._lengths, dtype=np.float64)
        avg = float(lengths[lengths > 0].mean()) if (lengths > 0).any() else 1.0
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / avg)
        total = np.zeros(n)
        for group in groups:
            best = np.zeros(n)
            for key in group.keys:
                plist = self._postings.get(key)
                if not plist:
                    continue
                docs = np.fromiter((d for d, _ in plist), dtype=np.int64, count=len(plist))
                tfs = np.fromiter((tf for _, tf in plist), dtype=np.float64, count=len(plist))
                scores = self.idf(key) * tfs * (BM25_K1 + 1) / (tfs + norm[docs])
                np.maximum.at(best, docs, scores)
            total += best * (1.5 if group.entity else 1.0)
        total *= 1 + PRIOR_STRENGTH * np.asarray(self._priors)
        live = np.asarray(
            [a.id in self._by_id and self._by_id[a.id] == i for i, a in enumerate(self._articles)]
        )
        total[~live] = 0
        groups = list(groups)
        order = [int(i) for i in np.argsort(-total)[: max(k, RERANK_TOP)] if total[i] > 0]
        if len(groups) > 1:
            # Vague questions ("Who attends from Germany?") match many short items that merely
            # mention one word; an article where the question's words meet in one sentence wins.
            rerank = {i: total[i] * (0.5 + self.coherence(i, groups)) for i in order}
            order.sort(key=lambda i: -rerank[i])
            return [(self._articles[i], float(rerank[i])) for i in order[:k]]
        return [(self._articles[i], float(total[i])) for i in order[:k]]

    def coherence(self, doc: int, groups: list[Group]) -> float:
        """The largest weighted share of keyword groups that occur together in one sentence."""
        weights = [g.weight * (1.5 if g.entity else 1.0) for g in groups]
        total = sum(weights) or 1.0
        best = 0.0
        for keys in self._sentence_keys[doc]:
            share = sum(
                w for g, w in zip(groups, weights, strict=True) if not g.keys.isdisjoint(keys)
            )
            best = max(best, share)
        return best / total


_SENTENCE_BREAK = re.compile(r"(?<=[.!?:;])\s+|\n+")


def _article_lang(article: Article) -> str:
    return article.lang if article.lang in languages() else FALLBACK_LANG


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
    ranked = simplemma.langdetect(question, lang=languages())
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
def _inflection_stems(word: str) -> tuple[str, ...]:
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
                skeleton(simplemma.lemmatize(w, lang="de")),
                *_inflection_stems(w),
            ):
                hit = lex.place_by_key.get(cand)
                if hit:
                    return hit[0], 1
    return None


def analyse_question(question: str, index: Index | None = None) -> Question:
    """Find a question's language, answer type and keyword groups (translated to all languages)."""
    lang = question_lang(question)
    data = lang_data(lang)
    low = question.strip().lower()
    qtype = "entity"
    for pattern, kind in data.qtypes:
        if pattern.search(low):
            qtype = kind
            break
    words = re.findall(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:[-'’][\w]+)*", question)
    folded = [fold(w) for w in words]
    # German separable verbs: "nimmt ... teil" -> "teilnehmen".
    merged: dict[int, str] = {}
    if folded and folded[-1] in data.separable_particles:
        for j in range(len(words) - 2, 0, -1):
            lem = fold(simplemma.lemmatize(words[j], lang="de")) if lang == "de" else folded[j]
            if not words[j][:1].isupper() and folded[j] not in data.stopwords:
                merged[j] = folded[-1] + lem
                break
    skip = set(data.question_words) | set(data.stopwords)
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
                phrase_words = [fold(simplemma.lemmatize(w, lang=lang)) for w in words[i : i + n]]
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
        lem = merged.get(i) or fold(simplemma.lemmatize(word, lang=lang))
        keys = {skeleton(lem)} if i in merged else {key_of(word, lang), skeleton(lem), skeleton(f)}
        for concept in _reverse_terms(lang).get(lem, ()) + _reverse_terms(lang).get(f, ()):
            keys |= _concept_keys(concept)
        if "-" in word:
            keys.update(key_of(p, lang) for p in word.split("-") if len(p) > 1)
        entity = _is_entity_word(word, i, lang)
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
        m = re.search(r"(?:how many|how much|wie ?viele?|welche anzahl)\s+([\w-]+)", low)
        if m:
            unit = next((g for g in groups if fold(g.surface) == fold(m.group(1))), None)
    if qtype == "list":
        m = re.search(r"(?:which|what|welche|welchen)\s+([\w-]+)", low)
        list_noun = fold(m.group(1)) if m else None
    if index is not None and len(index):
        groups = [_weighted(g, index) for g in groups]
    return Question(question, lang, qtype, tuple(groups), unit, list_noun)


def _is_entity_word(word: str, position: int, lang: str) -> bool:
    """Whether a question word names something (a person, an acronym) rather than a concept."""
    if word.isupper() and len(word) >= 2:
        return True
    if not word[:1].isupper() or position == 0:
        return False
    # German capitalises every noun: only words that are no dictionary noun are names.
    return not (lang == "de" and is_common_noun(word, lang))


def _weighted(group: Group, index: Index) -> Group:
    # Rare words tell more than common ones; an IDF-like weight, squashed into 0.5..2.
    idf = max((index.idf(k) for k in group.keys), default=0.0)
    weight = min(2.0, max(0.3, idf / 4.0))
    return Group(group.surface, group.keys, weight, group.entity, group.place)


def _matches(group: Group, sent: Sentence) -> list[int]:
    """Token positions in `sent` where `group` occurs (German compounds match on their parts)."""
    hits = []
    for pos, tok in enumerate(sent.tokens):
        key = tok.key
        if key in group.keys or skeleton(tok.text) in group.keys:
            hits.append(pos)
            continue
        if "-" in tok.text and any(skeleton(p) in group.keys for p in tok.text.split("-")):
            hits.append(pos)
            continue
        if group.place and any(stem in group.keys for stem in _inflection_stems(tok.text)):
            hits.append(pos)  # German genitive and adjective endings: Russlands, sudanesischen
            continue
        if len(key) >= 7 and not group.entity:
            for g in group.keys:
                if len(g) >= 5 and len(key) > len(g) + 2 and (key.endswith(g) or key.startswith(g)):
                    hits.append(pos)
                    break
    hits.extend(pos for key, pos in sent.extra if key in group.keys)
    return hits


def _overlaps_question(text: str, q: Question) -> bool:
    words = {skeleton(w) for w in re.findall(r"[^\W\d_]+", text)}
    words |= {skeleton(w[:-1]) for w in re.findall(r"[^\W\d_]+s", text)}
    return any(g.entity and g.keys & words for g in q.groups)


def _candidate_text(
    span: Span, q: Question, sents: tuple[Sentence, ...], sent: Sentence, lang: str
) -> str | None:
    if span.kind in ("person", "name") and q.qtype in ("person", "entity"):
        person = resolve_person(span, sents)
        if person is not None:
            return describe_person(person, lang)
    return _demonym_phrase(span, sent, lang) or span.text


def _demonym_phrase(span: Span, sent: Sentence, lang: str) -> str | None:
    """A lone demonym is no answer: "Arab militia", "Afghan border" keep their noun."""
    if span.end - span.start != 1 or span.end >= len(sent.tokens):
        return None
    lex = lexicon()
    hit = lex.place_by_key.get(skeleton(span.text))
    folded = fold(span.text)
    if not hit or not any(
        folded in lex.places[i].adjectives and folded not in lex.places[i].names for i in hit
    ):
        return None
    noun = sent.tokens[span.end].text
    if not noun.isalpha() or not noun.islower() or len(noun) < 3:
        return None
    if fold(noun) in lang_data(lang).stopwords:
        return None
    return f"{span.text} {noun}"


def answer_article(q: Question, article: Article, index: Index | None = None) -> Candidate | None:
    """The best-scoring answer to `q` in one article, or None if it has none of the right type."""
    sents = index.analysed(article) if index is not None else analyse_article(article)
    if not sents:
        return None
    lang = _article_lang(article)
    total = sum(g.weight for g in q.groups) or 1.0
    matched = [{gi: _matches(g, s) for gi, g in enumerate(q.groups)} for s in sents]
    # An entity the question names (a person, a country) that the article never mentions means
    # the article cannot answer: "Who attends from France?" over an article without France.
    for gi, g in enumerate(q.groups):
        if g.entity and not any(m[gi] for m in matched):
            return None
    cover = [sum(q.groups[gi].weight for gi, hits in m.items() if hits) / total for m in matched]
    if q.qtype == "summary":
        return _summary(q, article, sents, cover)
    best: Candidate | None = None
    fits = FIT.get(q.qtype, FIT["entity"])
    for si, sent in enumerate(sents):
        own = {gi for gi, hits in matched[si].items() if hits}
        near: set[int] = set()
        for sj in (si - 1, si + 1):
            if 0 <= sj < len(sents):
                near |= {gi for gi, hits in matched[sj].items() if hits}
        near -= own
        window = (
            sum(q.groups[gi].weight for gi in own) + 0.4 * sum(q.groups[gi].weight for gi in near)
        ) / total
        positions = [p for gi in own for p in matched[si][gi]]
        for span in sent.spans:
            fit = fits.get(span.kind, 0.0)
            if fit == 0.0:
                continue
            if span.kind == "name" and q.qtype == "person":
                fit = 1.0 if resolve_person(span, sents) is not None else fit
            if span.kind != "number" and _overlaps_question(span.text, q):
                continue
            head_end = span.start + 1 if span.kind == "number" else span.end
            if any(span.start <= p < head_end for p in positions):
                continue  # the question's own words are not its answer
            score = window * fit
            if q.qtype == "number" and q.unit is not None:
                unit_hit = span.unit is not None and _unit_matches(q.unit, span, sent)
                score *= 1.0 if unit_hit else 0.35
            if q.qtype == "list" and q.list_noun:
                score *= _list_fit(span, q, sent, lang)
            if q.qtype == "place" and span.kind == "place":
                # "Where" wants the most specific place: a city over a country over a continent.
                score *= PLACE_PREFERENCE.get(place_kind(span.text) or "city", 1.0)
                if (
                    span.start > 0
                    and fold(sent.tokens[span.start - 1].text) in lang_data(lang).place_preps
                ):
                    score *= 1.1
            # Countries the question is about should sit with the answer, not elsewhere.
            for gi, g in enumerate(q.groups):
                if g.place and gi not in own and q.qtype in ("person", "number"):
                    score *= 0.6 if gi in near else 0.35
            if positions:
                dist = min(min(abs(p - span.start), abs(p - (span.end - 1))) for p in positions)
                score += 0.12 * math.exp(-dist / 6)
            if q.qtype in ("person", "entity") and span.kind in ("person", "name"):
                score *= _role_agreement(span, q, sents, lang)
                score *= _nationality_agreement(span, q, sent, matched[si], lang)
            if best is None or score > best.score:
                text = _candidate_text(span, q, sents, sent, lang)
                if text:
                    best = Candidate(text, sent.text, score, article.id)
    return best


def _role_agreement(span: Span, q: Question, sents: tuple[Sentence, ...], lang: str) -> float:
    """Favour a person whose role is the one asked about ("the Serbian foreign minister")."""
    asked = [g for g in q.groups if not g.entity and is_role(g.surface, q.lang)]
    if not asked:
        return 1.0
    person = resolve_person(span, sents) if span.kind in ("person", "name") else None
    role = (person.role if person is not None else None) or span.role
    if not role:
        return 0.8
    role_sentence = analyse(role, lang)
    return 1.3 if any(_matches(g, role_sentence) for g in asked) else 0.6


def _country_tokens(sent: Sentence) -> list[int]:
    """Positions of tokens that name a country or its adjective (Georgian, russische, US-...)."""
    lex = lexicon()
    found = []
    for pos, tok in enumerate(sent.tokens):
        if not tok.cap and not tok.text[:1].isupper() and not tok.text.islower():
            continue
        text = tok.text
        cands = [skeleton(text), skeleton(text.rstrip("s")), tok.key]
        if "-" in text:
            cands.append(skeleton(text.split("-")[0]))
        for cand in cands:
            hit = lex.place_by_key.get(cand)
            if hit and lex.places[hit[0]].kind == "country":
                found.append(pos)
                break
    return found


def _nationality_agreement(
    span: Span, q: Question, sent: Sentence, matched: Mapping[int, list[int]], lang: str
) -> float:
    """A country the question asks about must belong to this person, not to a neighbour.

    The check is per phrase: the country mention nearest to the person decides, so "Russian
    President Putin ... Georgia" does not answer "Who is the Georgian president?".
    """
    asked = [gi for gi, g in enumerate(q.groups) if g.place and matched.get(gi)]
    if not asked:
        return 1.0

    asked_pos = {p for gi in asked for p in matched[gi]}
    factor = 1.0
    # The person's own nationality: a country word inside the span, right before it, or before
    # its role word ("Russian President Putin", "aus Österreich Johanna Mikl-Leitner").
    before = [span.start - 1]
    if span.start >= 2 and is_role(sent.tokens[span.start - 1].text, lang):
        before.append(span.start - 2)
    own = [p for p in _country_tokens(sent) if span.start <= p < span.end or p in before]
    if own and not any(p in asked_pos for p in own):
        factor *= 0.1  # another country's person: not an answer
    return factor


def _unit_matches(unit: Group, span: Span, sent: Sentence) -> bool:
    tok = next((t for t in sent.tokens[span.start : span.end] if t.text == span.unit), None)
    if tok is None:
        return False
    fake = Sentence(tok.text, (tok,), (), frozenset({tok.key}))
    return bool(_matches(unit, fake))


def _list_fit(span: Span, q: Question, sent: Sentence, lang: str) -> float:
    """How well a list answers "which regions/countries ...": places for place nouns."""
    items = span.items or (span.text,)
    place_nouns = {
        "regions",
        "countries",
        "cities",
        "states",
        "towns",
        "provinces",
        "places",
        "villages",
        "areas",
        "nations",
        "districts",
        "regionen",
        "lander",
        "staaten",
        "stadte",
        "orte",
        "provinzen",
        "gebiete",
        "dorfer",
        "nationen",
    }
    if q.list_noun in place_nouns:
        lex = lexicon()
        placey = sum(
            1
            for it in items
            if skeleton(it.split()[-1]) in lex.place_by_key
            or skeleton(it) in lex.place_by_key
            or " ".join(skeleton(w) for w in it.split()) in lex.place_by_key
        )
        return 0.5 + 0.5 * placey / len(items)
    return 1.0


def _summary(
    q: Question, article: Article, sents: tuple[Sentence, ...], cover: list[float]
) -> Candidate | None:
    """One sentence that says what happened: the best-covered sentence, else the lead."""
    body = list(range(len(sents)))
    if not article.title.strip() and len(sents) > 1 and len(sents[0].tokens) < 14:
        body = body[1:]  # German corpus texts open with a headline; prefer the lead
    if q.groups:
        best = max(body, key=lambda i: (cover[i], -i))
        if cover[best] <= 0:
            return None
        score = 0.4 + 0.6 * cover[best]
    else:
        best, score = body[0], 0.6
    text = sents[best].text
    return Candidate(text[:MAX_ANSWER_CHARS], text, score, article.id)


def _source(article: Article) -> SourceRef:
    return SourceRef(
        id=article.id,
        title=article.title or _first_words(article.text),
        date=article.published,
        url=article.url,
    )


def _first_words(text: str, limit: int = 80) -> str:
    first = text.strip().split("\n", 1)[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def answer(question: str, index: Index, article_id: str | None = None) -> Answer:
    """Answer a question from one article (article_id) or from the whole index, or say None."""
    q = analyse_question(question, index)
    if article_id is not None:
        article = index.get(article_id)
        if article is None:
            return Answer(question=question, text=None, lang=q.lang)
        cand = answer_article(q, article, index)
        if cand is None or cand.score < ABSTAIN_BELOW:
            return Answer(question=question, text=None, lang=q.lang, sources=(_source(article),))
        return _to_answer(question, q, cand, [article])
    hits = index.search_groups(q.groups, READ_TOP)
    if not hits:
        return Answer(question=question, text=None, lang=q.lang)
    top = hits[0][1]
    best: Candidate | None = None
    for article, retrieval in hits:
        cand = answer_article(q, article, index)
        if cand is None:
            continue
        # Retrieval agreement breaks ties between articles that answer equally well.
        scored = Candidate(
            cand.text, cand.sentence, cand.score * (0.75 + 0.25 * retrieval / top), article.id
        )
        if best is None or scored.score > best.score:
            best = scored
    if best is None or best.score < ABSTAIN_BELOW:
        return Answer(question=question, text=None, lang=q.lang)
    ordered = [a for a, _ in hits if a.id == best.article_id]
    ordered += [a for a, _ in hits if a.id != best.article_id][:2]
    return _to_answer(question, q, best, ordered)


def _to_answer(question: str, q: Question, cand: Candidate, articles: list[Article]) -> Answer:
    text = (
        cand.text if len(cand.text) <= MAX_ANSWER_CHARS else cand.text[: MAX_ANSWER_CHARS - 1] + "…"
    )
    return Answer(
        question=question,
        text=text,
        lang=q.lang,
        sentence=cand.sentence,
        sources=tuple(_source(a) for a in articles),
        confidence=round(min(1.0, cand.score), 3),
    )


async def answer_llm(
    question: str,
    index: Index,
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    article_id: str | None = None,
) -> Answer:
    """Answer with an OpenAI-compatible chat endpoint over retrieved sentences; offline fallback."""
    offline = answer(question, index, article_id)
    q = analyse_question(question, index)
    if article_id is not None:
        article = index.get(article_id)
        articles = [article] if article is not None else []
    else:
        articles = [a for a, _ in index.search_groups(q.groups, 3)]
    numbered: list[tuple[str, Article]] = []
    for article in articles:
        for sent in index.analysed(article):
            numbered.append((sent.text, article))
    if not numbered:
        return offline
    context = "\n".join(f"[{i}] {s}" for i, (s, _) in enumerate(numbered[:80]))
    prompt = (
        "Answer the question from the numbered sentences only. Reply with JSON "
        '{"answer": <short answer copied from one sentence, or null>, "sentence": <its number>}.'
        f"\n\nSentences:\n{context}\n\nQuestion: {question}"
    )
    try:
        response = await client.post(
            f"{base_url.rstrip('/')}/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
            },
        )
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        reply = json.loads(re.search(r"\{.*\}", content, re.DOTALL).group(0))  # type: ignore[union-attr]
    except (httpx.HTTPError, KeyError, IndexError, ValueError, AttributeError, TypeError):
        return offline
    text, number = reply.get("answer"), reply.get("sentence")
    if text is None:
        return Answer(question=question, text=None, lang=q.lang)
    if not isinstance(text, str) or not isinstance(number, int) or not 0 <= number < len(numbered):
        return offline
    sentence, article = numbered[number]
    # Grounding: the answer must be written in the sentence it cites, else we do not trust it.
    if fold(text.strip()) not in fold(sentence) or len(text) > MAX_ANSWER_CHARS:
        return offline
    sources = [article, *[a for a in articles if a.id != article.id][:2]]
    return Answer(
        question=question,
        text=text.strip(),
        lang=q.lang,
        sentence=sentence,
        sources=tuple(_source(a) for a in sources),
        confidence=0.7,
    )
