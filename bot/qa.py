"""Question answering over news articles in German and English: retrieve, extract, or abstain."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import dictionary, ranker
from bot.extract import (
    Sentence,
    Span,
    analyse,
    analyse_article,
    describe_person,
    fold,
    is_place_noun,
    is_role,
    key_of,
    lang_data,
    lexicon,
    place_kind,
    resolve_person,
    skeleton,
)
from bot.models import Answer, Article, SourceRef
from bot.question import (
    Group,
    Question,
    asked_place_kind,
    concept_keys,
    inflection_stems,
    question_lang,
    unit_classes,
    units,
)
from bot.question import analyse as analyse_question
from bot.search import MemoryIndex, article_lang
from bot.search import Retrieval as Retrieval  # re-exported: what callers pass to answer()

if TYPE_CHECKING:
    import httpx  # imported by answer_llm only: a one-off `newsbot ask` never needs it

# The in-memory index under its old name (tests, the console, one-off batches).
Index = MemoryIndex

# Below this score the evidence is too weak and the answer is None ("the articles don't say").
ABSTAIN_BELOW = 0.34
# The answer is the short span; the sentence that supports it is in Answer.sentence.
MAX_ANSWER_CHARS = 120
# Longer input is not analysed (chat adapters may refuse it politely before asking).
MAX_QUESTION_CHARS = 500
# How many retrieved articles the store-wide answerer reads.
READ_TOP = 8
# ... of those, only the ones retrieved at least this share of the best hit's score.
READ_SHARE = 0.4
# A "where" answer prefers specific places; unknown names (villages, regions) count as specific.
PLACE_PREFERENCE: dict[str, float] = {"city": 1.0, "country": 0.9, "region": 0.7}


# "Where": a place named in the wire dateline ("Brüssel (dpa) –") is where the story happens.
DATELINE_BONUS = 1.2
_DATELINE = re.compile(
    r"^\s*(?:date \S+\s+)?([A-ZÄÖÜ][\w'.-]*(?:[ /][A-ZÄÖÜ][\w'.-]*){0,2})\s*"
    r"(?:,[^()\n–—]{0,30}?)?\s*(?:\([^)\n]{1,20}\))?\s*(?:[–—]|--?)\s"
)


def _dateline(text: str) -> str | None:
    """The place of a wire dateline ("Brüssel (dpa) – ...", "ABUJA, Aug 25 (dpa) -- ...")."""
    m = _DATELINE.match(text)
    return skeleton(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored answer found in one article."""

    text: str
    sentence: str
    score: float
    article_id: str


@dataclass(frozen=True, slots=True)
class _Lookup:
    """A sentence's keys by position, built once: matching is the inner loop of answering."""

    exact: dict[str, list[int]]
    stems: dict[str, list[int]]
    long: tuple[tuple[int, str], ...]


_LOOKUPS: dict[tuple[str, int, int], _Lookup] = {}


def _lookup(sent: Sentence) -> _Lookup:
    first = sent.tokens[0].start if sent.tokens else 0
    cache_key = (sent.text, first, len(sent.tokens))
    found = _LOOKUPS.get(cache_key)
    if found is not None:
        return found
    exact: dict[str, list[int]] = {}
    stems: dict[str, list[int]] = {}
    long: list[tuple[int, str]] = []
    for pos, tok in enumerate(sent.tokens):
        keys = {tok.key, skeleton(tok.text)}
        if "-" in tok.text:
            keys.update(skeleton(p) for p in tok.text.split("-"))
        for key in keys:
            exact.setdefault(key, []).append(pos)
        for stem in inflection_stems(tok.text):
            stems.setdefault(stem, []).append(pos)
        if len(tok.key) >= 7:
            long.append((pos, tok.key))
    for key, pos in sent.extra:
        exact.setdefault(key, []).append(pos)
    found = _Lookup(exact, stems, tuple(long))
    if len(_LOOKUPS) > 100_000:
        _LOOKUPS.clear()  # bounded memory for long-running bots
    _LOOKUPS[cache_key] = found
    return found


def _matches(group: Group, sent: Sentence) -> list[int]:
    """Token positions in `sent` where `group` occurs (German compounds match on their parts)."""
    look = _lookup(sent)
    hits = [pos for key in group.keys for pos in look.exact.get(key, ())]
    if group.place:
        # German genitive and adjective endings: Russlands, sudanesischen.
        hits.extend(pos for key in group.keys for pos in look.stems.get(key, ()))
    if not group.entity:
        for pos, key in look.long:
            for g in group.keys:
                if len(g) >= 5 and len(key) > len(g) + 2 and (key.endswith(g) or key.startswith(g)):
                    hits.append(pos)
                    break
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


def answer_article(
    q: Question,
    article: Article,
    index: Retrieval | None = None,
    trace: list[tuple[tuple[float, ...], str]] | None = None,
    learned: bool = True,
) -> Candidate | None:
    """The best answer to `q` in one article, or None if it has none of the right type.

    The hand-weighted score says whether the article answers (its best candidate's score is
    the confidence) and, unless a fitted ranker ships (`bot.ranker`; none does, see
    docs/qa.md), which candidate is the answer. `trace` collects every candidate's features
    and text (benchmarks/_fit_ranker.py).
    """
    sents = index.analysed(article) if index is not None else analyse_article(article)
    if not sents:
        return None
    lang = article_lang(article)
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
    fits = q.kind.fits
    if q.qtype == "person" and q.head_word is not None:
        # "Welcher Finanzminister", "which candidate": the head noun names a person, so an
        # organisation (the fit a bare "who" grants: "who claimed the attack?") cannot answer.
        fits = {kind: fit for kind, fit in fits.items() if kind != "org"}
    filed = _dateline(article.text) if q.qtype == "place" else None
    concepts = any(not g.entity and g is not q.head for g in q.groups)
    # Features cost time per candidate: only when tracing or a fitted ranker chooses.
    want = trace is not None or (learned and ranker.model() is not None)
    found: list[_Scored] = []
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
        concept_pos = [p for gi in own if not q.groups[gi].entity for p in matched[si][gi]]
        entity_pos = [p for gi in own if q.groups[gi].entity for p in matched[si][gi]]
        clause = _clauses(sent)
        # A passage that shares only names with the question says nothing about the asked
        # relation ("Who will succeed X?" over sentences that merely mention X).
        related = any(not q.groups[gi].entity for gi in own | near)
        relation = 1.0 if related or not concepts else 0.6
        in_sentence: list[_Scored] = []
        for span in sent.spans:
            fit = fits.get(span.kind, 0.0)
            if fit == 0.0:
                continue
            if span.kind == "name" and q.qtype == "person":
                fit = 1.0 if resolve_person(span, sents) is not None else fit
            elif (
                span.kind == "name"
                and q.qtype in ("org", "place")
                and resolve_person(span, sents) is not None
            ):
                # "Jaalon" is named with his role elsewhere in the article: a person, no party.
                fit = fits.get("person", 0.0)
                if fit == 0.0:
                    continue
            common = span.kind == "name" and _common_word(span.text, lang)
            if common:
                fit *= 0.3  # "Opinion polls ...", "Islamic militants": a capitalised common word
            if span.kind != "number" and _overlaps_question(span.text, q):
                continue
            if q.qtype in ("person", "org") and (
                _demonym_phrase(span, sent, lang) is not None or _demonym(span.text)
            ):
                continue  # "Iranian film", "the Afghans" name no one
            head_end = span.start + 1 if span.kind == "number" else span.end
            if any(span.start <= p < head_end for p in positions) and not _other_part(
                span, sent, q, lang
            ):
                continue  # the question's own words are not its answer
            typed = _type_factor(span, q, sent, lang)
            others = (
                _roles_of_others(span, q, sent, matched[si], lang)
                if q.qtype in ("person", "entity") and span.kind in ("person", "name")
                else set()
            )
            span_window, span_relation = window, relation
            if others:
                # Those words describe other people ("Gespräche mit Wirtschaftsvertretern"):
                # for this candidate the sentence does not have them.
                kept = own - others
                span_window = (
                    sum(q.groups[gi].weight for gi in kept)
                    + 0.4 * sum(q.groups[gi].weight for gi in near)
                ) / total
                if concepts and not any(not q.groups[gi].entity for gi in kept | near):
                    span_relation = 0.6
            score = span_window * fit * span_relation * typed
            dateline = filed is not None and span.kind == "place" and skeleton(span.text) == filed
            if dateline:
                score *= DATELINE_BONUS  # of the places a sentence names, the one filed from
            # Countries the question is about should sit with the answer, not elsewhere.
            country = 1.0
            for gi, g in enumerate(q.groups):
                if g.place and gi not in own and (q.qtype == "person" or q.kind.numeric):
                    country *= 0.6 if gi in near else 0.35
            score *= country
            # The candidate's own matched words (not the roles of other people).
            where = [p for gi in own - others for p in matched[si][gi]] if others else positions
            dist = _distance(span, where)
            same_clause = any(clause[p] == clause[span.start] for p in where)
            if where:
                # Where the candidate stands: near the question's words, in their clause.
                score += 0.12 * math.exp(-dist / 6)
                if same_clause:
                    score *= 1.15
            head_next = q.head is not None and _next_to(q.head, span, sent)
            if head_next:
                score *= 1.3  # "die Zeitung Danas", "the Labor Party": the asked kind of thing
            elif q.head is not None and q.qtype == "entity":
                # "In welchem Krankenhaus": a head noun of no known kind; an entity that does not
                # stand with it is probably of another kind ("West Bank" is no hospital).
                score *= 0.7
            agree = 1.0
            if q.qtype in ("person", "entity") and span.kind in ("person", "name"):
                agree *= _role_agreement(span, q, sents, lang)
                agree *= _nationality_agreement(span, q, sent, matched[si], lang)
            score *= agree
            features: list[float] = []
            if want:
                entity_dist = _distance(span, entity_pos)
                nearest_entity = min(entity_pos, key=lambda p: abs(p - span.start), default=None)
                features = [
                    math.log(max(score, 1e-3)),
                    math.log(max(span_window, 1e-3)),
                    sum(q.groups[gi].weight for gi in own) / total,
                    math.log(max(fit, 1e-3)),
                    math.log(max(typed, 1e-3)),
                    math.exp(-dist / 6) if where else 0.0,
                    min(dist, 30) / 10,
                    min(_distance(span, concept_pos), 30) / 10,
                    min(entity_dist, 30) / 10,
                    float(nearest_entity is not None and 0 < span.start - nearest_entity <= 4),
                    float(same_clause),
                    0.0,  # closest: set once the sentence's candidates are known
                    0.0,  # rank_near: likewise
                    float(head_next),
                    float(q.head is not None and not head_next),
                    float(dateline),
                    math.log(max(agree, 1e-3)),
                    math.log(max(country, 1e-3)),
                    float(span_relation == 1.0),
                    si / max(1, len(sents) - 1),
                    float(si == 0),
                    span.start / max(1, len(sent.tokens)),
                    math.log(span.end - span.start),
                    sum(span.start <= p < span.end for p in set(positions))
                    / (span.end - span.start),
                    float(common),
                    float(span.unit is not None),
                    float(_in_parens(span, sent)),
                    *(float(span.kind == k) for k in _KINDS),
                    (math.exp(-dist / 6) if where else 0.0) * q.kind.numeric,
                    min(entity_dist, 30) / 10 * (q.qtype in ("person", "org", "entity")),
                ]
                near_exp = features[5]
                cross = float(q.lang != lang)
                features += [
                    cross * features[2],
                    cross * near_exp,
                    cross * features[7],
                    cross * features[0],
                    near_exp * (q.qtype == "place"),
                    near_exp * (q.qtype == "time"),
                    near_exp * (q.qtype == "person"),
                ]
            in_sentence.append(_Scored(span, si, score, dist, features))
        by_dist = sorted(in_sentence, key=lambda c: c.dist) if want else []
        for rank, cand in enumerate(by_dist):
            cand.features[_CLOSEST] = float(rank == 0)
            cand.features[_RANK] = min(rank / 5, 1.0)
        found.extend(in_sentence)
    return _choose(found, q, sents, lang, article, trace, learned)


_KINDS = ("person", "name", "org", "place", "time", "number", "list")
_CLOSEST = ranker.FEATURES.index("closest")
_RANK = ranker.FEATURES.index("rank_near")


@dataclass(slots=True)
class _Scored:
    """A candidate span with its hand-weighted score and its ranker features."""

    span: Span
    sentence: int
    score: float
    dist: float
    features: list[float]


def _roles_of_others(
    span: Span, q: Question, sent: Sentence, hits: Mapping[int, list[int]], lang: str
) -> set[int]:
    """The non-name question groups that the sentence has only as role nouns (Vertreter,
    US-Vertreter, Sprecher) none of which stands with the candidate: before it in its clause,
    in apposition right after it, or as its role ("US-Vertreter: Xi ..." is no apposition).

    "Wer vertritt die USA?" over "Xi ... in den USA ..., Gespräche mit Wirtschaftsvertretern":
    the representatives, not Xi, do what is asked (a question verb's dictionary senses include
    its agent noun, and German compounds match on their head)."""
    out: set[int] = set()
    for gi, positions in hits.items():
        if not positions or q.groups[gi].entity:
            continue
        toks = sent.tokens
        if not all(is_role(toks[p].text, lang) or is_role(toks[p].key, lang) for p in positions):
            continue
        clause = _clauses(sent)
        if not any(
            (span.start - 3 <= p < span.start and clause[p] == clause[span.start])
            or span.end <= p <= span.end + 1
            or (span.role is not None and toks[p].text in span.role)
            for p in positions
        ):
            out.add(gi)
    return out


def _distance(span: Span, positions: list[int]) -> float:
    """Tokens between a span and the nearest of `positions` (99 when there are none)."""
    if not positions:
        return 99.0
    return float(min(min(abs(p - span.start), abs(p - (span.end - 1))) for p in positions))


def _in_parens(span: Span, sent: Sentence) -> bool:
    """Whether the span stands inside brackets ("die Partei (SPÖ)")."""
    start = sent.tokens[span.start].start
    before = sent.text[:start]
    return before.count("(") > before.count(")")


def _choose(
    found: list[_Scored],
    q: Question,
    sents: tuple[Sentence, ...],
    lang: str,
    article: Article,
    trace: list[tuple[tuple[float, ...], str]] | None,
    learned: bool,
) -> Candidate | None:
    """The article's answer: the ranker's first candidate with a text, scored by the best
    hand-weighted candidate (so abstention and the choice between articles stay the hand's)."""
    texts: dict[int, str | None] = {}

    def text_of(i: int) -> str | None:
        if i not in texts:
            c = found[i]
            sent = sents[c.sentence]
            texts[i] = _candidate_text(c.span, q, sents, sent, lang)
        return texts[i]

    if trace is not None:
        for i, c in enumerate(found):
            trace.append((tuple(c.features), text_of(i) or ""))
    by_hand = sorted(range(len(found)), key=lambda i: -found[i].score)
    confident = next((i for i in by_hand if text_of(i)), None)
    if confident is None:
        return None
    chosen = confident
    fitted = ranker.model() if learned else None
    if fitted is not None:
        by_model = sorted(range(len(found)), key=lambda i: -fitted.score(tuple(found[i].features)))
        chosen = next(i for i in by_model if text_of(i))
    text = text_of(chosen)
    assert text is not None  # chosen among candidates with a text
    return Candidate(text, sents[found[chosen].sentence].text, found[confident].score, article.id)


def _type_factor(span: Span, q: Question, sent: Sentence, lang: str) -> float:
    """How well a candidate has what the question type asks for (unit, list items, place)."""
    factor = 1.0
    if span.kind == "number" and q.kind.numeric:
        classes = _number_classes(span, sent)
        if _in_date(span, sent, lang):
            factor *= 0.1  # "am 21. August", "Aug. 21": the day of a date counts nothing
        if q.unit is not None:
            factor *= _unit_fit(q.unit, span, sent)
        if not q.kind.units and classes - unit_classes(q.unit.surface if q.unit else ""):
            factor *= 0.3  # "how many people" is not answered by "vier Jahre" or "65 Prozent"
        if q.kind.units:
            factor *= 1.0 if classes & set(q.kind.units) else 0.15
            if q.qtype == "age" and "duration" in classes and "age" not in classes:
                factor *= 0.3
            if q.qtype == "penalty":
                factor *= 1.3 if _penalty_near(span, sent) else 0.6
    if q.qtype == "list" and q.list_noun:
        factor *= _list_fit(span, q, sent, lang)
    if q.qtype == "time" and span.kind == "time" and _asks_since(q):
        # "Since when ...": the time that follows "seit"/"since".
        first = fold(sent.tokens[span.start].text)
        prev = fold(sent.tokens[span.start - 1].text) if span.start else ""
        factor *= 1.3 if "seit" in (first, prev) or "since" in (first, prev) else 0.8
    if q.qtype == "time" and span.kind == "time":
        factor *= _event_time(span, q, sent)
    if q.qtype == "place" and span.kind == "place":
        # "Where" wants the most specific place: a city over a country over a continent.
        found = place_kind(span.text)
        factor *= PLACE_PREFERENCE.get(found or "city", 1.0)
        asked = asked_place_kind(q.head_word) if q.head_word is not None else None
        if asked is not None and found is not None and found != asked:
            factor *= 0.3  # "which town" is not answered by a country
        before = fold(sent.tokens[span.start - 1].text) if span.start > 0 else ""
        if before in units().origin_preps and q.text.split()[0].lower() not in ("from", "woher"):
            factor *= 0.7  # "die Attentäter von Paris": an origin, not where it happened
        elif before in lang_data(lang).place_preps:
            factor *= 1.1
    return factor


# Hand-lexicon concepts of reporting: a time next to them dates the report, not the event.
REPORTING = ("say", "announce")
REPORT_TIME = 0.6
# "On what date": a day with its number answers, a weekday or a month alone less well.
DATE_NOUNS = ("date", "datum")


def _event_time(span: Span, q: Question, sent: Sentence) -> float:
    """How well a time dates the asked event: not the day it was reported ("sagte am Montag"),
    and for "what date" a day with its number ("am 21. August", not "im August")."""
    factor = 1.0
    if q.head_word is not None and fold(q.head_word) in DATE_NOUNS:
        factor *= 1.2 if any(ch.isdigit() for ch in span.text) else 0.8
    reporting = frozenset().union(*(concept_keys(c) for c in REPORTING))
    if any(g.keys & reporting for g in q.groups):
        return factor  # "When did the ministry announce ...": the report is the event
    clause = _clauses(sent)
    lo, hi = max(0, span.start - 3), min(len(sent.tokens), span.end + 3)
    # German separable verbs count where their particle stands ("teilte am Montag mit").
    keys = [(tok.key, i) for i, tok in enumerate(sent.tokens)] + list(sent.extra)
    for key, i in keys:
        if lo <= i < hi and clause[i] == clause[span.start] and key in reporting:
            return factor * REPORT_TIME
    return factor


def _other_part(span: Span, sent: Sentence, q: Question, lang: str) -> bool:
    """Whether a span is the part of a compound the question does not name ("SPÖ" of
    "SPÖ-Kandidat" when the question asks about the candidate)."""
    if span.end - span.start != 1 or span.text == sent.tokens[span.start].text:
        return False
    own = analyse(span.text, lang)
    return not any(_matches(g, own) for g in q.groups)


def _demonym(text: str) -> bool:
    """Whether a one-word span is only a nationality ("Afghans", "Russen"), not a place's name."""
    if " " in text:
        return False
    lex = lexicon()
    for key in {skeleton(text), skeleton(text.rstrip("s")), skeleton(text.rstrip("n"))}:
        hit = lex.place_by_key.get(key)
        if hit and not any(key in {skeleton(n) for n in lex.places[i].names} for i in hit):
            return True
    return False


def _in_date(span: Span, sent: Sentence, lang: str) -> bool:
    """Whether a bare number is the day of a date: a month name right after or before it."""
    if span.unit is not None or span.end - span.start != 1:
        return False
    months = lang_data(lang).months
    near = [span.end, span.start - 1]
    words = [fold(sent.tokens[i].text).rstrip(".") for i in near if 0 <= i < len(sent.tokens)]
    return any(w in months or f"{w}." in months for w in words)


def _common_word(text: str, lang: str) -> bool:
    """Whether a one-word English name is an ordinary word the dictionary translates."""
    if lang != "en" or " " in text or text.isupper() or skeleton(text) in lexicon().place_by_key:
        return False
    return bool(dictionary.translate(key_of(text.lower(), lang), lang, "de"))


def _asks_since(q: Question) -> bool:
    words = {fold(w) for w in q.text.split()[:3]}
    return "since" in words or "seit" in words


_CLAUSE_BREAK = re.compile(r"[,;:()\[\]–—]")


def _clauses(sent: Sentence) -> list[int]:
    """A clause number per token: punctuation between two tokens starts a new clause."""
    out, current = [], 0
    for i, tok in enumerate(sent.tokens):
        if i and _CLAUSE_BREAK.search(sent.text[sent.tokens[i - 1].end : tok.start]):
            current += 1
        out.append(current)
    return out


def _next_to(group: Group, span: Span, sent: Sentence) -> bool:
    """Whether a question word stands right before or after the span (its head noun)."""
    lo, hi = max(0, span.start - 2), min(len(sent.tokens), span.end + 1)
    window = Sentence(sent.text, sent.tokens[lo:hi], (), frozenset())
    return bool(_matches(group, window))


def _number_classes(span: Span, sent: Sentence) -> set[str]:
    """Unit classes of a number: its unit word, a currency sign before it, "aged 23", "23 alt"."""
    found: set[str] = set()
    for tok in sent.tokens[span.start : span.end]:
        found |= unit_classes(tok.text)
    if span.unit is not None:
        found |= unit_classes(span.unit)  # "dreitägigen": the unit is glued to the number
    start = sent.tokens[span.start].start
    before = sent.text[max(0, start - 2) : start]
    if any(sign in before for sign in "$€£"):
        found.add("money")
    nxt = sent.tokens[span.end].text.lower() if span.end < len(sent.tokens) else ""
    prev = sent.tokens[span.start - 1].text.lower() if span.start else ""
    if ("duration" in found and nxt in ("alt", "old")) or prev in ("aged", "alter", "im"):
        found.add("age")
    if not found and _apposition_age(span, sent):
        found.add("age")
    if "age" in found and not _penalty_near(span, sent):
        found.discard("duration")  # "25-jähriger" is an age; "fünfjährige Haft" a duration
    return found


def _apposition_age(span: Span, sent: Sentence) -> bool:
    """ "Silvio Berlusconi, 68, has ...": a bare number set off by commas after a name is an age."""
    toks = sent.tokens
    if span.end - span.start != 1 or span.start == 0 or span.end >= len(toks):
        return False
    number, before, after = toks[span.start], toks[span.start - 1], toks[span.end]
    if not number.text.isdigit() or not 0 < int(number.text) < 120:
        return False
    left = sent.text[before.end : number.start].strip()
    right = sent.text[number.end : after.start].strip()
    return left == "," and right == "," and before.text[:1].isupper()


def _penalty_near(span: Span, sent: Sentence) -> bool:
    """Whether a prison word follows the duration ("15 Jahren Arbeitslager", "5 years in jail")."""
    words = sent.tokens[span.end - 1 : span.end + 4]
    return any("penalty" in unit_classes(t.text) for t in words) or any(
        "penalty" in unit_classes(t.text) for t in sent.tokens[max(0, span.start - 3) : span.start]
    )


def _unit_fit(unit: Group, span: Span, sent: Sentence) -> float:
    """How well a number has the asked unit: its own unit word, near it, or absent."""
    if fold(unit.surface) in units().classes.get("people", ()):
        # "how many people": a count of people or victims; a bare number is a weaker answer.
        if span.unit is None:
            return 0.8
        return 1.0 if unit_classes(span.unit) & {"people", "victims"} else 0.35
    if span.unit is not None and _unit_matches(unit, span, sent):
        return 1.0
    clause = _clauses(sent)
    lo, hi = max(0, span.start - 6), min(len(sent.tokens), span.end + 4)
    same = [i for i in range(lo, hi) if clause[i] == clause[span.start]]
    window = Sentence(sent.text, tuple(sent.tokens[i] for i in same), (), frozenset())
    # "80 weitere wurden verletzt", "die Zahl der Haftbefehle ist mit 17 ...".
    return 0.9 if _matches(unit, window) else 0.35


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
    # Mild: role words match loosely across languages ("Premierminister" vs "Minister").
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
    # "die polnische Botschafterin in Moskau": a place after a preposition is where the person
    # serves, not whose they are; the nationality is the other place.
    own_country = [gi for gi in asked if not _after_preposition(q.groups[gi].surface, q)]
    if own_country:
        asked = own_country
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


def _after_preposition(surface: str, q: Question) -> bool:
    """Whether a question word follows a place preposition ("in Moskau", "to Austria")."""
    m = re.search(r"(\w+)\s+" + re.escape(surface) + r"\b", q.text)
    return m is not None and fold(m.group(1)) in lang_data(q.lang).place_preps


def _unit_matches(unit: Group, span: Span, sent: Sentence) -> bool:
    tok = next((t for t in sent.tokens[span.start : span.end] if t.text == span.unit), None)
    if tok is None:
        return False
    fake = Sentence(tok.text, (tok,), (), frozenset({tok.key}))
    return bool(_matches(unit, fake))


def _list_fit(span: Span, q: Question, sent: Sentence, lang: str) -> float:
    """How well a list answers "which regions/countries ...": places for place nouns."""
    items = span.items or (span.text,)
    noun = q.list_noun or ""
    # The language file's place nouns decide ("regions", "Länder"), as in extraction.
    if is_place_noun(noun, q.lang) or is_place_noun(noun.capitalize(), q.lang):
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


def answer(
    question: str,
    index: Retrieval,
    article_id: str | None = None,
    hidden_sources: frozenset[str] = frozenset(),
    shown_ids: frozenset[str] = frozenset(),
) -> Answer:
    """Answer a question from one article (article_id) or from the whole index, or say None.

    Articles whose `source` is in `hidden_sources` (other chats' own feeds) are never read,
    except those in `shown_ids` (another source the chat may see carried them too).
    """
    if len(question) > MAX_QUESTION_CHARS:
        # A pasted article is no question; analysing it would hold a worker for seconds.
        return Answer(
            question=question[:MAX_QUESTION_CHARS], text=None, lang=question_lang(question[:200])
        )
    q = analyse_question(question, index)
    if article_id is not None:
        article = index.get(article_id)
        if article is None or (article.source in hidden_sources and article.id not in shown_ids):
            return Answer(question=question, text=None, lang=q.lang)
        cand = answer_article(q, article, index)
        if cand is None or cand.score < ABSTAIN_BELOW:
            return Answer(question=question, text=None, lang=q.lang, sources=(_source(article),))
        return _to_answer(question, q, cand, [article])
    hits = index.search_groups(q.groups, READ_TOP)
    if hidden_sources:
        hits = [
            (article, score)
            for article, score in hits
            if article.source not in hidden_sources or article.id in shown_ids
        ]
    if not hits:
        return Answer(question=question, text=None, lang=q.lang)
    top = hits[0][1]
    best: Candidate | None = None
    read: set[int] = set()
    for article, retrieval in hits:
        if retrieval < READ_SHARE * top:
            break  # far below the best hit: reading it costs time and rarely changes the answer
        if hash(article.text) in read:
            continue  # another copy of a report already read (syndicated wire text)
        read.add(hash(article.text))
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
    index: Retrieval,
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    article_id: str | None = None,
) -> Answer:
    """Answer with an OpenAI-compatible chat endpoint over retrieved sentences; offline fallback."""
    import httpx

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


def answer_record(answer: Answer) -> dict[str, Any]:
    """The JSON object `newsbot ask` prints for an answer (shared by this fast path and bot.cli)."""
    return {
        "answer": answer.text,
        "sources": [
            {"id": s.id, "title": s.title, "date": s.date, "url": s.url} for s in answer.sources
        ],
        "confidence": round(answer.confidence, 4),
        "sentence": answer.sentence,
        "lang": answer.lang,
    }
