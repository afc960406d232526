"""What a digest or alert says about an article: a one-sentence summary, who, and where.

Built on bot.extract's sentence analysis. People keep their full role ("army chief Abdel
Fattah al-Burhan", not "chief"); places are listed once per lemma ("Syrien, Syriens" is one).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bot import regions
from bot.extract import (
    Sentence,
    Span,
    analyse_article,
    describe_person,
    key_of,
    resolve_person,
    skeleton,
)
from bot.models import Article

# Words that may stand before a role without being part of it.
_NOT_ROLE = frozenset(
    [
        "a",
        "an",
        "the",
        "his",
        "her",
        "its",
        "their",
        "our",
        "new",
        "former",
        "then",
        "acting",
        "deputy's",
        "of",
        "and",
        "or",
        "said",
        "says",
        "der",
        "die",
        "das",
        "den",
        "dem",
        "des",
        "ein",
        "eine",
        "einer",
        "einem",
        "eines",
        "sein",
        "seine",
        "ihr",
        "ihre",
        "und",
    ]
)
_ROLE_WORD = re.compile(r"[a-zäöüß][\w-]*$")
_MAX_ROLE_WORDS = 3
# English titles are capitalised before a name ("Deputy Foreign Minister Alexander Grushko"):
# the words a title is made of, so the whole title is kept, not just its last word.
_TITLE_WORDS = frozenset(
    [
        "secretary",
        "general",
        "deputy",
        "foreign",
        "defence",
        "defense",
        "interior",
        "finance",
        "justice",
        "prime",
        "minister",
        "vice",
        "president",
        "chief",
        "commander",
        "ambassador",
        "envoy",
        "special",
        "high",
        "representative",
        "spokesman",
        "spokeswoman",
        "spokesperson",
        "army",
        "military",
        "navy",
        "air",
        "state",
        "staff",
        "nato",
        "un",
        "u.n.",
        "eu",
        "us",
        "u.s.",
        "national",
        "security",
        "senior",
        "top",
        "supreme",
        "lieutenant",
        "major",
        "colonel",
        "admiral",
    ]
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What an article is about in one sentence, the people in it and the places it names."""

    summary: str
    who: tuple[str, ...] = ()
    where: tuple[str, ...] = ()


def people(sents: Iterable[Sentence]) -> list[Span]:
    """Person mentions, with single surnames and "name" spans resolved against full names."""
    sents = list(sents)
    full: dict[str, Span] = {}
    for sent in sents:
        for span in sent.spans:
            if span.kind == "person" and " " in span.text:
                full.setdefault(skeleton(span.text.split()[-1]), span)
    found: list[Span] = []
    for sent in sents:
        for span in sent.spans:
            if span.kind not in ("person", "name"):
                continue
            last = skeleton(re.sub(r"s$", "", span.text.split()[-1]))
            last_plain = skeleton(span.text.split()[-1])
            if span.kind == "person" or last in full or last_plain in full:
                found.append(span)
    return found


def full_role(role: str, name: str, sents: Iterable[Sentence], lang: str = "en") -> str:
    """A one-word role with the words that qualify it in the text: "chief" -> "army chief",
    "Minister" -> "Deputy Foreign Minister"."""
    # German roles are compounds ("Armeechef") and already whole; English ones are phrases.
    titled = lang == "en" and role.casefold() in _TITLE_WORDS
    if " " in role or not (role[:1].islower() or titled):
        return role
    for sent in sents:
        at = sent.text.find(f"{role} {name}")
        if at < 0:
            continue
        qualifiers = _qualifiers(sent.text[:at].split(), titled)
        if qualifiers:
            return " ".join([*qualifiers, role])
    return role


def _qualifiers(before: list[str], titled: bool) -> list[str]:
    """The words just before a role that belong to it: lower-case ones ("army chief") and, for
    an English title, title words ("Nato Secretary General", "Secretary of State")."""
    qualifiers: list[str] = []
    while before and len(qualifiers) < _MAX_ROLE_WORDS:
        word = before[-1]
        folded = word.casefold()
        is_title = titled and folded in _TITLE_WORDS
        if folded == "of" and titled and len(before) > 1 and before[-2].casefold() in _TITLE_WORDS:
            qualifiers[:0] = before[-2:]
            del before[-2:]
            continue
        if not is_title and (not _ROLE_WORD.match(word) or folded in _NOT_ROLE):
            break
        qualifiers.insert(0, word)
        before.pop()
    return qualifiers


def _person(span: Span, sents: tuple[Sentence, ...], lang: str) -> str:
    if span.role:
        role = full_role(span.role, span.text, sents, lang)
        if role != span.role:
            # Written as in the text: "army chief Abdel Fattah al-Burhan".
            return f"{role} {span.text}"
    return describe_person(span, lang)


def _place_name(text: str, lang: str) -> str:
    """A country named in any form ("Syriens") by its name in `lang` ("Syrien"); else as is."""
    found = regions.mentions(text)
    if len(found) == 1 and " " not in text.strip():
        return regions.countries()[found[0]].label(lang)
    return text


def facts(article: Article) -> Facts:
    """One-sentence summary, the people (with roles) and the places of an article."""
    sents = analyse_article(article)
    body = sents[1:] if article.title.strip() else sents
    summary = ""
    for sent in body or sents:
        if len(sent.tokens) >= 8:
            summary = sent.text
            break
    if not summary and sents:
        summary = sents[0].text
    # German corpus texts open with a headline-like sentence; the lead after it is the summary.
    if not article.title.strip() and len(sents) > 1 and len(sents[0].tokens) < 14:
        lead = sents[1].text
        if len(sents[1].tokens) >= 8:
            summary = lead
    who: list[str] = []
    seen: set[str] = set()
    for span in people(sents):
        full = resolve_person(span, sents) or span
        last = skeleton(full.text.split()[-1])
        if last in seen:
            continue
        seen.add(last)
        who.append(_person(full, sents, article.lang))
    # Places by lemma: "Syrien" and "Syriens" are one place; a country by its name.
    counts: Counter[str] = Counter()
    order: dict[str, int] = {}
    shown: dict[str, str] = {}
    for sent in sents:
        for span in sent.spans:
            if span.kind == "place":
                name = _place_name(span.text, article.lang)
                key = " ".join(key_of(word, article.lang) for word in name.split())
                shown.setdefault(key, name)
                counts[key] += 1
                order.setdefault(key, len(order))
    where = tuple(shown[k] for k in sorted(counts, key=lambda k: (-counts[k], order[k])))
    return Facts(summary=summary, who=tuple(who), where=where)
