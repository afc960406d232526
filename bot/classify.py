"""Decide whether an article is conflict-related, with a score, the cues that fired and topics.

The scorer is driven entirely by per-language data files in `bot/data/lexicon/<lang>.toml`
(cues with weights, negative cues for other subjects, a region gazetteer); this module holds
no word lists. See docs/classifier.md for the data format and how the score is built.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress
from pathlib import Path
from typing import Protocol

from bot.models import Article, Level, Thresholds, Verdict

DEFAULT_LEXICON_DIR = Path(__file__).parent / "data" / "lexicon"
# Extra lexicon directories (os.pathsep-separated), searched before the shipped one: a
# deployment can add or override a language without touching the package.
LEXICON_PATH_ENV = "NEWSBOT_LEXICON_PATH"
FALLBACK_LANG = "en"

_WORD = re.compile(r"\w+")
_TERM_PART = re.compile(r"\*?\w+\*?")
# A sentence end followed by space; used only to find where the lead stops.
_SENTENCE_END = re.compile(r"[.!?][\"'»«“”]?\s")

# The lead is the headline plus the opening of the text: wire copy and feed items put the
# main subject there (LABELING.md's main-subject rule), so cues in it count more.
_LEAD_MIN_CHARS = 180
_LEAD_MAX_CHARS = 450

# Scoring constants, language-independent; hand-set (see docs/classifier.md).
_BIAS = -2.5
_LEAD_WEIGHT = 1.0
_BODY_WEIGHT = 0.55
_REGION_WEIGHT = 0.9
_LEAD_NEG_WEIGHT = 0.6
_BODY_NEG_WEIGHT = 0.35
_LEAD_CAP = 8.0
_DENSITY_CAP = 8.0
_BODY_REPEAT_CAP = 3
# Without any unambiguous cue or conflict region, "attack", "Angriff", "killed" are usually
# sport, crime or accidents: they count only this much.
_UNSUPPORTED_AMBIGUOUS = 0.25
_SUPPORTING_REGION = 0.5
_MAX_REASONS = 6
_MAX_TOPICS = 3
_TOKEN_CACHE_LIMIT = 300_000

_NO_GLOBS: frozenset[int] = frozenset()
_KINDS = ("conflict", "ambiguous", "negative", "region")
DEFAULT_THRESHOLDS = Thresholds()


class LexiconError(ValueError):
    """A lexicon data file is malformed."""


# The parts the lexicon's log-odds are built from (`lexicon_evidence`), in this order: the
# capped lead and body-density sums of positive and negative cues, the region prior, whether
# ambiguous cues counted fully, whether the lead names a region, how many regions are named.
EVIDENCE = (
    "lead_pos",
    "body_pos",
    "region_prior",
    "lead_neg",
    "body_neg",
    "supported",
    "lead_region",
    "regions",
)


class Correction(Protocol):
    """A learned change to the lexicon's log-odds (bot.learn's FeedbackModel is one)."""

    def correction(self, article: Article, logit: float, evidence: Sequence[float]) -> float:
        """How much to add to `logit`, the lexicon's log-odds of `article` made of `evidence`."""
        ...


@dataclass(frozen=True, slots=True)
class _Cue:
    """One weighted term group member: what it signals and how strongly."""

    term: str
    kind: str
    topic: str
    weight: float


@dataclass(frozen=True, slots=True)
class _Glob:
    """A single-word pattern: a literal core, optionally open at either end."""

    core: str
    open_start: bool
    open_end: bool


@dataclass(slots=True)
class _Lexicon:
    """A compiled language file: a trie regex over all cores and the cue tables."""

    lang: str
    cues: list[_Cue]
    globs: list[_Glob]
    core_globs: dict[str, list[int]]
    single: dict[int, list[int]]  # glob id -> cue ids of one-word terms
    phrases: dict[int, list[tuple[int, tuple[int, ...]]]]  # first glob -> (cue, rest globs)
    matcher: re.Pattern[str]
    cache: dict[str, frozenset[int]] = field(default_factory=dict)
    # core -> (glob id, open at the start, open at the end) of each glob with that core.
    anchors: dict[str, tuple[tuple[int, bool, bool], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.anchors = {
            core: tuple((g, self.globs[g].open_start, self.globs[g].open_end) for g in ids)
            for core, ids in self.core_globs.items()
        }

    def globs_of(self, token: str) -> frozenset[int]:
        """Glob ids that match one surface token (cached: vocabularies repeat)."""
        hit = self.cache.get(token)
        if hit is None:
            self.prime([token])
            hit = self.cache[token]
        return hit

    def prime(self, tokens: Sequence[str]) -> None:
        """Cache the glob ids of every token not seen yet, with one regex pass for all of them."""
        cache = self.cache
        new = list(set(tokens).difference(cache))
        if not new:
            return
        if len(cache) + len(new) > _TOKEN_CACHE_LIMIT:
            # Bounded memory; every token of this call must still be found afterwards.
            cache.clear()
            new = list(set(tokens))
        # Most words match no core: they all get the shared empty set, in C.
        cache.update(dict.fromkeys(new, _NO_GLOBS))
        words = [t.casefold() for t in new]
        starts = list(accumulate((len(w) + 1 for w in words), initial=0))
        anchors = self.anchors
        found: dict[int, set[int]] = {}
        # Cores are word characters, so no match spans the space between two words; word k
        # is joined[starts[k] : starts[k + 1] - 1].
        for m in self.matcher.finditer(" ".join(words)):
            start, end = m.span()
            k = bisect_right(starts, start) - 1
            at_start, at_end = start == starts[k], end == starts[k + 1] - 1
            for g, open_start, open_end in anchors[m.group()]:
                if (open_start or at_start) and (open_end or at_end):
                    found.setdefault(k, set()).add(g)
        for k, ids in found.items():
            cache[new[k]] = frozenset(ids)


def _parse_glob(text: str) -> _Glob:
    core = text.strip("*")
    if not core or "*" in core:
        raise LexiconError(f"bad term {text!r}: use '*' only at the start or end")
    return _Glob(core.casefold(), text.startswith("*"), text.endswith("*"))


_Trie = dict[str, "_Trie"]


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, built as a trie so matching stays fast and greedy."""
    trie: _Trie = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: _Trie) -> str:
        alts = [re.escape(ch) + render(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        # Greedy optional tail: at each position the longest core wins.
        return f"(?:{body})?" if "" in node else body

    return render(trie) or "(?!)"


def _compile(lang: str, data: dict[str, object]) -> _Lexicon:
    cues: list[_Cue] = []
    globs: list[_Glob] = []
    glob_ids: dict[_Glob, int] = {}
    single: dict[int, list[int]] = {}
    phrases: dict[int, list[tuple[int, tuple[int, ...]]]] = {}

    def glob_id(text: str) -> int:
        g = _parse_glob(text)
        if g not in glob_ids:
            glob_ids[g] = len(globs)
            globs.append(g)
        return glob_ids[g]

    def add(term: str, kind: str, topic: str, weight: float) -> None:
        cue = len(cues)
        cues.append(_Cue(term, kind, topic, weight))
        # Split like the text is tokenised, so "cessez-le-feu" or "d'affaires" still match.
        parts = _TERM_PART.findall(term)
        if not parts:
            raise LexiconError(f"{lang}: empty term in {topic!r}")
        ids = tuple(glob_id(p) for p in parts)
        if len(ids) == 1:
            single.setdefault(ids[0], []).append(cue)
        else:
            phrases.setdefault(ids[0], []).append((cue, ids[1:]))

    groups = data.get("cues", [])
    if not isinstance(groups, list):
        raise LexiconError(f"{lang}: 'cues' must be an array of tables")
    for group in groups:
        kind = group.get("kind")
        if kind not in _KINDS or kind == "region":
            raise LexiconError(f"{lang}: cue group kind must be conflict/ambiguous/negative")
        topic = str(group.get("topic", ""))
        weight = float(group.get("weight", 1.0))
        for term in group.get("terms", []):
            add(str(term), kind, topic, weight)
    regions = data.get("regions", {})
    if not isinstance(regions, dict):
        raise LexiconError(f"{lang}: 'regions' must be a table")
    for name, spec in regions.items():
        for term in spec.get("terms", []):
            add(str(term), "region", str(name), float(spec.get("weight", 0.0)))

    # Longer phrases first, so the most specific one is tried first at a position.
    for options in phrases.values():
        options.sort(key=lambda item: -len(item[1]))
    core_globs: dict[str, list[int]] = {}
    for i, g in enumerate(globs):
        core_globs.setdefault(g.core, []).append(i)
    pattern = _trie_pattern(core_globs)
    if not any(g.open_start for g in globs):
        # Only matches at a word's start can count: do not look for the others at all.
        pattern = r"(?<!\w)" + pattern
    matcher = re.compile(pattern)
    return _Lexicon(lang, cues, globs, core_globs, single, phrases, matcher)


_LEXICONS: dict[tuple[str, str], _Lexicon | None] = {}


def _search_path() -> list[Path]:
    extra = os.environ.get(LEXICON_PATH_ENV, "")
    return [Path(p) for p in extra.split(os.pathsep) if p] + [DEFAULT_LEXICON_DIR]


def load_lexicon(lang: str) -> _Lexicon | None:
    """The compiled lexicon for `lang` from the search path, or None if there is none (cached)."""
    code = lang.strip().lower().replace("_", "-").split("-")[0]
    path_key = os.environ.get(LEXICON_PATH_ENV, "")
    key = (code, path_key)
    if key not in _LEXICONS:
        found: _Lexicon | None = None
        for directory in _search_path():
            path = directory / f"{code}.toml"
            if code and path.is_file():
                with path.open("rb") as fh:
                    found = _compile(code, tomllib.load(fh))
                break
        _LEXICONS[key] = found
    return _LEXICONS[key]


def available_languages() -> list[str]:
    """Language codes that have a lexicon file on the search path."""
    codes = {p.stem for d in _search_path() if d.is_dir() for p in d.glob("*.toml")}
    return sorted(codes)


def clear_cache() -> None:
    """Forget compiled lexicons (after changing the files or the search path)."""
    _LEXICONS.clear()


def _split_lead(article: Article) -> tuple[str, str]:
    text = article.text or ""
    if len(text) <= _LEAD_MAX_CHARS:
        return f"{article.title} {text}", ""
    m = _SENTENCE_END.search(text, _LEAD_MIN_CHARS, _LEAD_MAX_CHARS)
    cut = m.end() if m else _LEAD_MAX_CHARS
    return f"{article.title} {text[:cut]}", text[cut:]


@dataclass(slots=True)
class _Hits:
    """Cue occurrences of one article part: cue id -> (count, first surface form)."""

    counts: dict[int, int] = field(default_factory=dict)
    surface: dict[int, str] = field(default_factory=dict)


def _scan(lex: _Lexicon, tokens: list[str]) -> _Hits:
    """Cue hits among `tokens`, whose glob ids `lex.prime` has cached."""
    hits = _Hits()
    counts, surface = hits.counts, hits.surface
    globs = lex.cache.__getitem__
    n = len(tokens)
    phrases, single = lex.phrases, lex.single
    consumed = 0
    # Only the tokens that match some core are visited (the hot loop skips the rest in C).
    for i in compress(range(n), map(globs, tokens)):
        if i < consumed:
            continue
        gl = globs(tokens[i])
        step = 0
        for g in gl:
            for cue, rest in phrases.get(g, ()):
                end = i + 1 + len(rest)
                if end <= n and all(r in globs(tokens[i + 1 + k]) for k, r in enumerate(rest)):
                    counts[cue] = counts.get(cue, 0) + 1
                    surface.setdefault(cue, " ".join(tokens[i:end]))
                    step = len(rest) + 1
                    break
            if step:
                break
        if step:
            # A phrase consumes its words: "price war" must not also count as "war".
            consumed = i + step
            continue
        token = tokens[i]
        for g in gl:
            for cue in single.get(g, ()):
                # Counted in place, not by a method call: this is the innermost loop.
                counts[cue] = counts.get(cue, 0) + 1
                surface.setdefault(cue, token)
    return hits


def _sigmoid(z: float) -> float:
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def _cap(x: float, cap: float) -> float:
    """Soft saturation: linear for small x, approaching `cap` for large x."""
    return cap * math.tanh(x / cap)


@dataclass(slots=True)
class _Evidence:
    """Everything the score is computed from, kept for reasons and topics."""

    z: float = _BIAS
    reasons: list[tuple[float, str]] = field(default_factory=list)
    types: dict[str, float] = field(default_factory=dict)
    regions: dict[str, float] = field(default_factory=dict)
    lead: _Hits | None = None
    body: _Hits | None = None
    # The parts of z, named by EVIDENCE.
    parts: tuple[float, ...] = ()


def _evaluate(lex: _Lexicon, article: Article) -> _Evidence:
    lead_text, body_text = _split_lead(article)
    lead_tokens = _WORD.findall(lead_text)
    body_tokens = _WORD.findall(body_text)
    # One pass over the article's new words for both parts.
    lex.prime(lead_tokens + body_tokens)
    lead = _scan(lex, lead_tokens)
    body = _scan(lex, body_tokens) if body_tokens else _Hits()
    cues = lex.cues
    ev = _Evidence(lead=lead, body=body)

    region_prior = 0.0
    lead_region = 0.0
    for part, scale in ((lead, 1.0), (body, 0.5)):
        for cue_id, count in part.counts.items():
            cue = cues[cue_id]
            if cue.kind == "region":
                if part is lead:
                    lead_region = 1.0
                ev.regions[cue.topic] = ev.regions.get(cue.topic, 0.0) + scale * 2 * count
                region_prior = max(region_prior, cue.weight * scale)
    supported = region_prior >= _SUPPORTING_REGION * 0.5 or any(
        cues[c].kind == "conflict" for part in (lead, body) for c in part.counts
    )
    amb = 1.0 if supported else _UNSUPPORTED_AMBIGUOUS

    def signed(cue: _Cue) -> float:
        if cue.kind == "conflict":
            return cue.weight
        if cue.kind == "ambiguous":
            return cue.weight * amb
        if cue.kind == "negative":
            return -cue.weight
        return 0.0

    lead_pos = lead_neg = 0.0
    for cue_id in lead.counts:
        w = signed(cues[cue_id])
        if w > 0:
            lead_pos += w
            ev.reasons.append((w * 2, lead.surface[cue_id]))
            ev.types[cues[cue_id].topic] = ev.types.get(cues[cue_id].topic, 0.0) + 2 * w
        else:
            lead_neg -= w
    body_pos = body_neg = 0.0
    for cue_id, count in body.counts.items():
        w = signed(cues[cue_id]) * min(count, _BODY_REPEAT_CAP)
        if w > 0:
            body_pos += w
            ev.reasons.append((w, body.surface[cue_id]))
            ev.types[cues[cue_id].topic] = ev.types.get(cues[cue_id].topic, 0.0) + w
        else:
            body_neg -= w
    per100 = 100.0 / max(len(body_tokens), 100)
    lead_p, body_p = _cap(lead_pos, _LEAD_CAP), _cap(body_pos * per100, _DENSITY_CAP)
    lead_n, body_n = _cap(lead_neg, _LEAD_CAP), _cap(body_neg * per100, _DENSITY_CAP)
    ev.z += (
        _LEAD_WEIGHT * lead_p
        + _BODY_WEIGHT * body_p
        + _REGION_WEIGHT * region_prior
        - _LEAD_NEG_WEIGHT * lead_n
        - _BODY_NEG_WEIGHT * body_n
    )
    ev.parts = (
        lead_p,
        body_p,
        region_prior,
        lead_n,
        body_n,
        amb,
        lead_region,
        float(len(ev.regions)),
    )
    return ev


def _reasons(ev: _Evidence) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for _, form in sorted(ev.reasons, key=lambda r: -r[0]):
        key = form.casefold()
        if key not in seen:
            seen.add(key)
            out.append(form)
        if len(out) == _MAX_REASONS:
            break
    return tuple(out)


def _topics(ev: _Evidence) -> tuple[str, ...]:
    regions = [r for r, _ in sorted(ev.regions.items(), key=lambda kv: -kv[1])]
    kind = max(ev.types.items(), key=lambda kv: kv[1])[0] if ev.types else None
    ordered = regions[:1] + ([kind] if kind else []) + regions[1:]
    return tuple(ordered[:_MAX_TOPICS])


def _level(score: float, thresholds: Thresholds) -> Level:
    if score >= thresholds.alert:
        return Level.ALERT
    if score >= thresholds.digest:
        return Level.DIGEST
    return Level.IGNORE


def _lexicon_for(lang: str) -> _Lexicon:
    lex = load_lexicon(lang or FALLBACK_LANG) or load_lexicon(FALLBACK_LANG)
    if lex is None:
        raise LexiconError(f"no lexicon for {lang!r} nor {FALLBACK_LANG!r}")
    return lex


def lexicon_logit(article: Article) -> float:
    """The lexicon scorer's log-odds for `article` (the feedback model's starting point)."""
    return _evaluate(_lexicon_for(article.lang), article).z


def region_weights(article: Article) -> dict[str, float]:
    """Regions the gazetteer names ("Syria" for Aleppo, Syrien), weighted: the lead counts more."""
    return dict(_evaluate(_lexicon_for(article.lang), article).regions)


def regions(article: Article) -> frozenset[str]:
    """Canonical labels of the regions the article names."""
    return frozenset(region_weights(article))


def lexicon_evidence(article: Article) -> tuple[float, tuple[float, ...]]:
    """The lexicon's log-odds and the parts they are built from (named by EVIDENCE)."""
    ev = _evaluate(_lexicon_for(article.lang), article)
    return ev.z, ev.parts


def classify(
    article: Article,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    model: Correction | None = None,
) -> Verdict:
    """Score one article for conflict relevance and explain the verdict."""
    lex = _lexicon_for(article.lang)
    ev = _evaluate(lex, article)
    score = _sigmoid(ev.z)
    reasons = _reasons(ev) if score >= 0.2 else ()
    if model is not None:
        # The feedback model learns corrections to the lexicon's log-odds (see bot.learn).
        combined = _sigmoid(ev.z + model.correction(article, ev.z, ev.parts))
        if combined >= thresholds.digest > score:
            reasons = (*reasons, "similar to articles marked relevant")
        score = combined
    score = round(score, 4)
    return Verdict(
        article_id=article.id,
        # Conflict-related means "goes into digests" (config: digest_threshold), so a verdict
        # never says conflict while its level says ignore, or the other way round.
        conflict=score >= thresholds.digest,
        score=score,
        reasons=reasons,
        level=_level(score, thresholds),
        topics=_topics(ev) if score >= 0.2 else (),
    )


def verdict_line(article: Article, verdict: Verdict, output: str) -> str:
    """One output line of `newsbot classify` (bot.entry's fast path and bot.cli)."""
    if output == "text":
        flag = "CONFLICT" if verdict.conflict else "-"
        reasons = ", ".join(verdict.reasons[:4])
        return f"{verdict.score:.2f} {flag:8} {article.id}  {article.title[:70]}  {reasons}\n"
    record = {
        "id": article.id,
        "conflict": verdict.conflict,
        "score": round(verdict.score, 4),
        "reasons": list(verdict.reasons),
        "level": verdict.level.value,
        "topics": list(verdict.topics),
    }
    return json.dumps(record, ensure_ascii=False) + "\n"
