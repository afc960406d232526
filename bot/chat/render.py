"""Turn posts (Digest, Alert, Answer, Notice) into text for each platform; pure functions."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bot import messages
from bot.models import Alert, Answer, Digest, DigestItem, Notice, Post


def text(lang: str, key: str) -> str:
    """A user-facing phrase in `lang` from the message catalogue, falling back to English."""
    return messages.text(lang, key)


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


# --- Telegram HTML ------------------------------------------------------------------------

TELEGRAM_LIMIT = 4096
"""Telegram's message length limit, in UTF-16 code units."""

# Links we are willing to put in an href: Telegram refuses some schemes outright, and a
# `javascript:` link in a news feed is an attack, not a source.
_LINK_SCHEMES = ("http://", "https://")
_MAX_URL = 2048


def utf16_len(value: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits."""
    return len(value.encode("utf-16-le")) // 2


def cut(value: str, units: int, mark: str = "…") -> str:
    """`value` shortened to at most `units` UTF-16 units, ending in `mark` when shortened."""
    if utf16_len(value) <= units:
        return value
    room = units - utf16_len(mark)
    if room <= 0:
        return ""
    out: list[str] = []
    used = 0
    for char in value:
        # Python strings hold code points, so an astral character is never split in half.
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > room:
            break
        out.append(char)
        used += size
    kept = "".join(out)
    space = kept.rfind(" ")
    if space > len(kept) * 0.7:
        kept = kept[:space]
    return kept.rstrip() + mark


def _esc(value: str) -> str:
    return html.escape(value, quote=False)


def _link(url: str | None, label: str) -> str:
    if url and url.lower().startswith(_LINK_SCHEMES) and len(url) <= _MAX_URL:
        return f'<a href="{html.escape(url, quote=True)}">{_esc(label)}</a>'
    return _esc(label)


def _html_item(item: DigestItem, lang: str, bullet: bool) -> str:
    title = f"<b>{_esc(item.title)}</b>"
    lines = [f"{'• ' if bullet else ''}{title} <i>({item.score:.2f})</i>"]
    if item.summary and item.summary != item.title:
        lines.append(_esc(item.summary))
    if item.who:
        lines.append(f"<i>{_esc(text(lang, 'who'))}:</i> {_esc('; '.join(item.who))}")
    if item.where:
        lines.append(f"<i>{_esc(text(lang, 'where'))}:</i> {_esc(', '.join(item.where))}")
    if item.reasons:
        reasons = ", ".join(item.reasons[:5])
        lines.append(f"<i>{_esc(text(lang, 'why'))}:</i> {_esc(reasons)}")
    origin = ", ".join(part for part in (item.source, item.published) if part)
    if item.url:
        source = _link(item.url, origin or item.url)
    else:
        source = f"{_esc(origin + ' · ') if origin else ''}<code>{_esc(item.article_id)}</code>"
    lines.append(f"<i>{_esc(text(lang, 'source'))}:</i> {source}")
    if item.also_reported_by:
        also = ", ".join(item.also_reported_by)
        lines.append(f"<i>{_esc(text(lang, 'also'))}:</i> {_esc(also)}")
    return "\n".join(lines)


def telegram_item(
    item: DigestItem, lang: str, *, bullet: bool = True, limit: int = TELEGRAM_LIMIT
) -> str:
    """One item as Telegram HTML within `limit`: an oversized item loses text, never markup."""
    if item.summary == item.title:
        # Not shown anyway; cutting it below would make it differ from the title and appear.
        item = replace(item, summary="")

    def fits(candidate: DigestItem) -> bool:
        return utf16_len(_html_item(candidate, lang, bullet)) <= limit

    # Shorten the plain text of one field after another (escaping happens after the cut, so no
    # entity or tag is ever split), each as little as needed: binary search on its length.
    for name in ("summary", "title", "who", "where", "reasons", "also_reported_by", "source"):
        if fits(item):
            break
        low, high = 0, len(_field_text(item, name))
        while low < high:
            middle = (low + high + 1) // 2
            if fits(_shortened(item, name, middle)):
                low = middle
            else:
                high = middle - 1
        item = _shortened(item, name, low)
    if not fits(item):
        # Only the link and the id are left to blame: show the item without them.
        item = replace(item, url=None, article_id=cut(item.article_id, 64))
    return _html_item(item, lang, bullet)


def _field_text(item: DigestItem, name: str) -> str:
    value = getattr(item, name)
    if isinstance(value, tuple):
        return "; ".join(value)
    return value or ""


def _shortened(item: DigestItem, name: str, keep: int) -> DigestItem:
    """`item` with field `name` cut to its first `keep` characters plus an ellipsis."""
    full = _field_text(item, name)
    if keep >= len(full):
        return item
    text = full[:keep].rstrip() + "…" if keep else ""
    changes: dict[str, Any] = {name: text}
    if isinstance(getattr(item, name), tuple):
        changes[name] = (text,) if text else ()
    elif name == "source":
        changes[name] = text or None
    return replace(item, **changes)


def telegram_text(value: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Plain text as escaped HTML parts within `limit`, split at line ends where possible."""
    parts: list[str] = []
    for line in value.split("\n"):
        chunk = line
        # A single over-long line is cut into pieces, each escaped only after cutting so no
        # entity (&amp;) is ever split.
        while utf16_len(_esc(chunk)) > limit:
            head = cut(chunk, limit, mark="")
            while utf16_len(_esc(head)) > limit:
                head = cut(head, utf16_len(head) - (utf16_len(_esc(head)) - limit), mark="")
            head = head or chunk[:1]
            parts.append(_esc(head))
            chunk = chunk[len(head) :]
        parts.append(_esc(chunk))
    return telegram_split(parts, limit, sep="\n")


def telegram_split(
    blocks: Sequence[str], limit: int = TELEGRAM_LIMIT, sep: str = "\n\n"
) -> list[str]:
    """Pack whole HTML blocks into as few messages as fit `limit`; a block is never split."""
    parts: list[str] = []
    current = ""
    for block in blocks:
        candidate = f"{current}{sep}{block}" if current else block
        if current and utf16_len(candidate) > limit:
            parts.append(current)
            candidate = block
        current = candidate
    if current.strip():
        parts.append(current)
    return parts or [""]


def telegram_html(post: Post, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Telegram HTML (parse_mode="HTML") message parts, each within `limit` UTF-16 units."""
    if isinstance(post, Notice):
        return telegram_text(post.text, limit)
    if isinstance(post, Answer):
        return _html_answer(post, limit)
    if isinstance(post, Alert):
        head = f"🚨 <b>{_esc(text(post.lang, 'alert'))}</b>\n"
        body = telegram_item(post.item, post.lang, bullet=False, limit=limit - utf16_len(head))
        return [head + body]
    return _html_digest(post, limit)


def _html_answer(answer: Answer, limit: int) -> list[str]:
    if answer.text is None:
        return [_esc(text(answer.lang, "dont_know"))]
    lines = [f"<b>{_esc(answer.text)}</b>"]
    if answer.sentence and answer.sentence.strip() != answer.text.strip():
        lines.append(f"<i>“{_esc(answer.sentence.strip())}”</i>")
    for source in answer.sources[:1]:
        when = f" ({source.date})" if source.date else ""
        label = _link(source.url, source.title) if source.url else _esc(source.title)
        ref = "" if source.url else f" <code>{_esc(source.id)}</code>"
        lines.append(f"<i>{_esc(text(answer.lang, 'source'))}:</i> {label}{_esc(when)}{ref}")
    rendered = "\n".join(lines)
    if utf16_len(rendered) <= limit:
        return [rendered]
    # Answers are a phrase and a sentence; only pathological input gets here.
    return telegram_text(plain(answer), limit)


def _html_digest(digest: Digest, limit: int) -> list[str]:
    lang = digest.lang
    if not digest.items:
        return [_esc(text(lang, "empty"))]
    head = f"📰 <b>{_esc(text(lang, 'digest'))}</b> — " + _esc(
        text(lang, "items").format(n=len(digest.items))
    )
    if digest.since:
        head += ", " + _esc(text(lang, "since").format(since=f"{digest.since:%Y-%m-%d %H:%M}"))
    blocks = [head]
    for topic, items in digest.groups():
        heading = f"<b>— {_esc(topic or text(lang, 'other'))} —</b>\n"
        for position, entry in enumerate(items):
            # A topic heading travels with its first item so no part ends in a bare heading.
            prefix = heading if position == 0 else ""
            budget = limit - utf16_len(prefix)
            blocks.append(prefix + telegram_item(entry, lang, limit=budget))
    return telegram_split(blocks, limit)
