"""Compose digests and alerts from classified articles: select, summarise, group, order; pure.

A digest lists each story once: reports of the same event (bot.cluster) become one item, the
best-scored report, with the other sources as "also reported by". Each story has one heading:
its main country (bot.regions), or the kind of conflict when no country is named.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

from bot import cluster, regions
from bot.facts import facts
from bot.models import Article, Digest, DigestItem, Level, Preferences, Verdict

# The classifier's conflict types (bot/data/lexicon): the heading when no place is named.
CONFLICT_TYPES = (
    "armed conflict",
    "terrorism",
    "political violence",
    "military tension",
    "diplomacy",
)


def heading(reports: Sequence[tuple[Article, Verdict]], lang: str = "en") -> str:
    """One heading for a story: its main country, else its kind of conflict."""
    kinds = [t for _, verdict in reports for t in verdict.topics if t in CONFLICT_TYPES]
    fallback = kinds[0] if kinds else next((v.topics[0] for _, v in reports if v.topics), "")
    main = regions.heading((article for article, _ in reports), fallback=fallback)
    return regions.label(main, lang)


def item(article: Article, verdict: Verdict, lang: str = "en") -> DigestItem:
    """One article as a digest/alert entry: title, one-sentence summary, who/where, why flagged."""
    found = facts(article)
    return DigestItem(
        article_id=article.id,
        title=article.title,
        summary=found.summary,
        score=verdict.score,
        reasons=verdict.reasons,
        topic=heading([(article, verdict)], lang),
        who=found.who[:3],
        where=found.where[:3],
        source=source_of(article),
        url=article.url,
        published=published_date(article.published),
    )


def build(
    entries: Iterable[tuple[Article, Verdict]],
    *,
    now: datetime,
    since: datetime | None = None,
    max_items: int = 20,
    lang: str = "en",
) -> Digest:
    """A digest of the digest-worthy stories: best first, grouped by heading, best group first."""
    ranked = sorted(
        (pair for pair in entries if pair[1].level is not Level.IGNORE),
        key=lambda pair: (-pair[1].score, pair[0].id),
    )
    # Best report first, so each story is told by its best report.
    stories = cluster.assign([article for article, _ in ranked], [])
    grouped: dict[str, list[tuple[Article, Verdict]]] = {}
    for pair in ranked:
        grouped.setdefault(stories[pair[0].id], []).append(pair)
    items: list[DigestItem] = []
    for reports in list(grouped.values())[:max_items]:
        article, verdict = reports[0]
        entry = replace(item(article, verdict, lang), topic=heading(reports, lang))
        others = tuple(
            dict.fromkeys(
                name
                for other, _ in reports[1:]
                if (name := source_of(other) or other.id) != entry.source
            )
        )
        items.append(replace(entry, also_reported_by=others) if others else entry)
    # Items are already best-first, so a stable sort by each heading's first position keeps
    # the best group on top and the order inside each group.
    first_seen: dict[str, int] = {}
    for position, entry in enumerate(items):
        first_seen.setdefault(entry.topic, position)
    items.sort(key=lambda entry: first_seen[entry.topic])
    return Digest(items=tuple(items), generated_at=now, since=since, lang=lang)


def source_of(article: Article) -> str | None:
    """Who reported an article: its agency, else its feed or file name."""
    source = article.agency or article.source
    if not source:
        return None
    if "://" in source:
        # A feed is shown by its site: its URL may carry credentials in the user part or the
        # query (`?apikey=`), and it is shown to every chat the article reaches.
        host = (urlsplit(source).hostname or "").removeprefix("www.")
        return host or None
    # A file path is shown by its name.
    if "/" in source:
        return source.rsplit("/", 1)[-1]
    return source


def published_date(published: str | None) -> str | None:
    """The day an article was published (an ISO timestamp's date part), as sources show it."""
    if published and len(published) > 10 and published[4] == "-" and published[10] == "T":
        return published[:10]
    return published


def wants(prefs: Preferences, article: Article, verdict: Verdict) -> bool:
    """Whether an article passes a chat's filters (countries, include and exclude words)."""
    haystack = f"{article.title}\n{article.text}"
    if prefs.exclude and any(_mentions(haystack, word) for word in prefs.exclude):
        return False
    if prefs.include and not any(_mentions(haystack, word) for word in prefs.include):
        return False
    if prefs.countries:
        topics = {t.casefold() for t in verdict.topics}
        for wanted in prefs.countries:
            # A chat may name the country in German or English ("Syrien", "Syria"): topics are
            # English labels, and the text may use either language's name.
            canonical = regions.resolve(wanted)
            names = {wanted} if canonical is None else {wanted, canonical}
            if canonical is not None:
                names.add(regions.label(canonical, "de"))
            if any(n.casefold() in topics or _mentions(haystack, n) for n in names):
                return True
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _word_pattern(word: str) -> re.Pattern[str]:
    # A whole word, with a German or English inflection at most ("Syriens", "Kurds"), and a
    # hyphenated compound ("Ukraine-Krieg"): "Niger" must not match "Nigeria".
    return re.compile(rf"(?<!\w){re.escape(word)}(?:s|es|n|en|e|er|ern)?(?!\w)", re.IGNORECASE)


def _mentions(text: str, word: str) -> bool:
    return bool(word.strip()) and _word_pattern(word.strip()).search(text) is not None
