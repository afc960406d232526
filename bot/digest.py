"""Compose digests and alerts from classified articles: select, summarise, group, order; pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot import extract
from bot.models import Article, Digest, DigestItem, Level, Verdict


def item(article: Article, verdict: Verdict) -> DigestItem:
    """One article as a digest/alert entry: title, one-sentence summary, who/where, why flagged."""
    facts = extract.facts(article)
    return DigestItem(
        article_id=article.id,
        title=article.title,
        summary=facts.summary,
        score=verdict.score,
        reasons=verdict.reasons,
        topic=verdict.topics[0] if verdict.topics else "",
        who=facts.who[:3],
        where=facts.where[:3],
        source=article.agency or _source_name(article.source),
        url=article.url,
        published=article.published,
    )


def build(
    entries: Iterable[tuple[Article, Verdict]],
    *,
    now: datetime,
    since: datetime | None = None,
    max_items: int = 20,
    lang: str = "en",
) -> Digest:
    """A digest of the digest-worthy entries: best first, grouped by topic, best group first."""
    chosen = sorted(
        (pair for pair in entries if pair[1].level is not Level.IGNORE),
        key=lambda pair: (-pair[1].score, pair[0].id),
    )[:max_items]
    items = [item(article, verdict) for article, verdict in chosen]
    # Items are already best-first, so a stable sort by each topic's first position keeps
    # the best group on top and the order inside each group.
    first_seen: dict[str, int] = {}
    for position, entry in enumerate(items):
        first_seen.setdefault(entry.topic, position)
    items.sort(key=lambda entry: first_seen[entry.topic])
    return Digest(items=tuple(items), generated_at=now, since=since, lang=lang)


def _source_name(source: str | None) -> str | None:
    if not source:
        return None
    # A file path is shown by its name; a feed URL or feed title as it is.
    if "://" not in source and "/" in source:
        return source.rsplit("/", 1)[-1]
    return source
