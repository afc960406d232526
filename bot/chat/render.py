"""Turn posts (Digest, Alert, Answer, Notice) into text for each platform; pure functions."""

from __future__ import annotations

from bot.models import Alert, Answer, Digest, DigestItem, Notice, Post

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "dont_know": "I don't know — the articles don't say.",
        "source": "Source",
        "sources": "Sources",
        "why": "Why flagged",
        "who": "Who",
        "where": "Where",
        "also": "Also reported by",
        "digest": "Conflict digest",
        "items": "{n} item(s)",
        "since": "since {since}",
        "empty": "No new conflict-related articles.",
        "alert": "Alert",
        "other": "Other",
    },
    "de": {
        "dont_know": "Das weiß ich nicht — die Artikel sagen dazu nichts.",
        "source": "Quelle",
        "sources": "Quellen",
        "why": "Warum gemeldet",
        "who": "Wer",
        "where": "Wo",
        "also": "Auch berichtet von",
        "digest": "Konflikt-Überblick",
        "items": "{n} Meldung(en)",
        "since": "seit {since}",
        "empty": "Keine neuen konfliktbezogenen Artikel.",
        "alert": "Meldung",
        "other": "Sonstiges",
    },
}


def text(lang: str, key: str) -> str:
    """A user-facing phrase in `lang`, falling back to English."""
    return TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]


def plain(post: Post) -> str:
    """Plain text for terminals and logs."""
    if isinstance(post, Notice):
        return post.text
    if isinstance(post, Answer):
        return _plain_answer(post)
    if isinstance(post, Alert):
        return f"🚨 {text(post.lang, 'alert')}: " + _plain_item(post.item, post.lang).lstrip("• ")
    return _plain_digest(post)


def _plain_answer(answer: Answer) -> str:
    if answer.text is None:
        return text(answer.lang, "dont_know")
    lines = [answer.text]
    if answer.sentence and answer.sentence.strip() != answer.text.strip():
        lines.append(f"  “{answer.sentence.strip()}”")
    for source in answer.sources[:1]:
        when = f" ({source.date})" if source.date else ""
        link = f" {source.url}" if source.url else f" [{source.id}]"
        lines.append(f"  {text(answer.lang, 'source')}: {source.title}{when}{link}")
    return "\n".join(lines)


def _plain_item(item: DigestItem, lang: str) -> str:
    lines = [f"• {item.title}  (score {item.score:.2f})"]
    if item.summary and item.summary != item.title:
        lines.append(f"  {item.summary}")
    if item.who:
        lines.append(f"  {text(lang, 'who')}: {'; '.join(item.who)}")
    if item.where:
        lines.append(f"  {text(lang, 'where')}: {', '.join(item.where)}")
    if item.reasons:
        lines.append(f"  {text(lang, 'why')}: {', '.join(item.reasons[:5])}")
    origin = ", ".join(part for part in (item.source, item.published) if part)
    link = item.url or f"[{item.article_id}]"
    lines.append(f"  {text(lang, 'source')}: {origin + ' · ' if origin else ''}{link}")
    if item.also_reported_by:
        lines.append(f"  {text(lang, 'also')}: {', '.join(item.also_reported_by)}")
    return "\n".join(lines)


def _plain_digest(digest: Digest) -> str:
    lang = digest.lang
    if not digest.items:
        return text(lang, "empty")
    head = f"📰 {text(lang, 'digest')} — {text(lang, 'items').format(n=len(digest.items))}"
    if digest.since:
        since = f"{digest.since:%Y-%m-%d %H:%M}"
        head += ", " + text(lang, "since").format(since=since)
    parts = [head]
    for topic, items in digest.groups():
        parts.append(f"\n== {topic or text(lang, 'other')} ==")
        parts.extend(_plain_item(item, lang) for item in items)
    return "\n".join(parts)
