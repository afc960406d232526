"""Turn posts (Digest, Alert, Answer, Notice) into text for each platform; pure functions."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot import messages
from bot.models import Alert, Answer, Digest, DigestItem, Notice, Post


def text(lang: str, key: str) -> str:
    """A user-facing phrase in `lang` from the message catalogue, falling back to English."""
    return messages.text(lang, key)


def merge_notices(posts: Sequence[Post]) -> list[Post]:
    """Consecutive notices as one message: fewer sends to pace, no flood wait between them."""
    merged: list[Post] = []
    for post in posts:
        if isinstance(post, Notice) and merged and isinstance(merged[-1], Notice):
            merged[-1] = Notice(f"{merged[-1].text}\n\n{post.text}")
        else:
            merged.append(post)
    return merged


# Terminal control: whole escape sequences first (an OSC title, a CSI clear screen, DCS/SOS/
# PM/APC strings, in their 7- and 8-bit forms), so no `]0;…` remnant is left, then any other
# C0 control but tab and line break, DEL and the C1 controls.
# A string sequence (OSC, DCS, SOS, PM, APC) goes whole only with its terminator and within its
# line: unterminated, only its introducer goes (by the last two branches), so one stray ESC or
# C1 byte in an article cannot swallow the rest of a digest.
_TERMINAL_CONTROL = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c\n]*(?:\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def printable(value: str) -> str:
    """`value` without terminal control sequences or control characters (tab, newline kept)."""
    return _TERMINAL_CONTROL.sub("", value.replace("\r\n", "\n"))


def plain(post: Post) -> str:
    """Plain text for terminals and logs, with no control sequence from what articles say."""
    # Here, not where text enters: every terminal output (console chat, `digest`, `ask`) goes
    # through this one function, whatever the text came from (a file, a feed, a fetched page,
    # an import, a stored article older than this check, a feed title in /sources).
    return printable(_plain(post))


def _plain(post: Post) -> str:
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


def _digest_heading(digest: Digest) -> tuple[str, str, str]:
    """(emoji, name, " — count" or ""): merged alerts are told apart from a digest at a glance."""
    n = len(digest.items)
    if digest.alerts:
        return "🚨", text(digest.lang, "alerts_merged").format(n=n), ""
    return "📰", text(digest.lang, "digest"), " — " + text(digest.lang, "items").format(n=n)


def _plain_digest(digest: Digest) -> str:
    lang = digest.lang
    if not digest.items:
        return text(lang, "empty")
    emoji, name, count = _digest_heading(digest)
    head = f"{emoji} {name}{count}"
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
        parts.extend(_split_line(line, limit))
    return telegram_split(parts, limit, sep="\n")


# UTF-16 units of a character once escaped; the rest count 1, or 2 beyond the BMP.
_ESCAPED_UNITS = {"&": len("&amp;"), "<": len("&lt;"), ">": len("&gt;")}


def _units(char: str) -> int:
    return _ESCAPED_UNITS.get(char) or (2 if ord(char) > 0xFFFF else 1)


def _split_line(line: str, limit: int) -> list[str]:
    """One line as escaped pieces of at most `limit` units, in linear time.

    The line is cut between characters (code points: never inside a surrogate pair) and each
    piece escaped after cutting, so no entity is split; a piece ends before a space when one
    is in its last 30 %.
    """
    pieces: list[str] = []
    start = used = 0
    space = -1  # the last space in the current piece
    index = 0
    while index < len(line):
        char = line[index]
        size = _units(char)
        if used + size > limit and index > start:
            end = space if space > start and space - start > 0.7 * (index - start) else index
            pieces.append(_esc(line[start:end]))
            start, used, space = end, 0, -1
            for position in range(start, index):  # what moved to the next piece: < 30 %
                used += _units(line[position])
                if line[position] == " " and position > start:
                    space = position
            continue
        if char == " ":
            space = index
        used += size
        index += 1
    pieces.append(_esc(line[start:]))
    return pieces


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
    emoji, name, count = _digest_heading(digest)
    head = f"{emoji} <b>{_esc(name)}</b>{_esc(count)}"
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


# --- Slack Block Kit ----------------------------------------------------------------------

SLACK_MAX_BLOCKS = 50
"""Slack refuses messages with more blocks than this."""
SLACK_SECTION_CHARS = 3000
"""Slack's limit for a section's (and a context element's) text."""
SLACK_HEADER_CHARS = 150
SLACK_FALLBACK_CHARS = 3000
# Button values travel back to us; Slack caps them at 2000 characters.
SLACK_VALUE_CHARS = 2000
SLACK_ACTIONS = {"why": "why", "up": "vote_up", "down": "vote_down"}
"""action_id of each alert button (the adapter maps presses back to Actions)."""

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One chat.postMessage: Block Kit blocks and the plain `text` fallback (notifications)."""

    text: str
    blocks: tuple[Block, ...]


def mrkdwn_escape(value: str) -> str:
    """Text safe in Slack mrkdwn: no accidental <!channel>, <@U…> or <link|label>."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(value: str, limit: int, escape: bool = True) -> str:
    """`value` (escaped) within `limit` UTF-16 units; cut before escaping, so no entity splits."""
    # Escaping and UTF-16 only lengthen text: no more than `limit` characters can fit, so the
    # work stays within them however long the field is.
    if len(value) <= limit:
        shown = mrkdwn_escape(value) if escape else value
        if utf16_len(shown) <= limit:
            return shown
    value = value[:limit]
    low, high = 0, len(value)
    while low < high:
        middle = (low + high + 1) // 2
        head = value[:middle] + "…"
        if utf16_len(mrkdwn_escape(head) if escape else head) <= limit:
            low = middle
        else:
            high = middle - 1
    head = value[:low].rstrip() + "…"
    return mrkdwn_escape(head) if escape else head


def _slack_link(url: str | None, label: str) -> str:
    if (
        url
        and url.lower().startswith(_LINK_SCHEMES)
        and len(url) <= _MAX_URL
        and not any(c in url for c in "<>| \n\t")
    ):
        return f"<{url.replace('&', '&amp;')}|{_fit(label, 500)}>"
    return _fit(label, 500)


def _plain_block(value: str, limit: int) -> Block:
    return {"type": "plain_text", "text": _fit(value, limit, escape=False), "emoji": True}


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _item_blocks(item: DigestItem, lang: str) -> list[Block]:
    """A section (title, summary, who, where) and a context (source, time, reasons)."""
    lines = [f"*{_fit(item.title, 600)}*  _{text(lang, 'score').format(score=item.score)}_"]
    if item.summary and item.summary != item.title:
        lines.append(_fit(item.summary, 1500))
    if item.who:
        lines.append(f"_{text(lang, 'who')}:_ {_fit('; '.join(item.who), 400)}")
    if item.where:
        lines.append(f"_{text(lang, 'where')}:_ {_fit(', '.join(item.where), 300)}")
    origin = ", ".join(part for part in (item.source, item.published) if part)
    source = _slack_link(item.url, origin or item.url or "") if item.url else ""
    if not source:
        source = f"{_fit(origin, 500) + ' · ' if origin else ''}`{_fit(item.article_id, 200)}`"
    context = [f"{text(lang, 'source')}: {source}"]
    if item.reasons:
        context.append(f"{text(lang, 'why')}: {_fit(', '.join(item.reasons[:5]), 500)}")
    if item.also_reported_by:
        context.append(f"{text(lang, 'also')}: {_fit(', '.join(item.also_reported_by), 500)}")
    return [
        _section("\n".join(lines)),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": part} for part in context],
        },
    ]


def _alert_buttons(alert: Alert) -> Block | None:
    article_id = alert.item.article_id
    if len(article_id) > SLACK_VALUE_CHARS:
        return None  # the alert still goes out, only without buttons
    labels = {"why": "button_why", "up": "button_up", "down": "button_down"}
    elements = [
        {
            "type": "button",
            "action_id": action_id,
            "text": _plain_block(text(alert.lang, labels[kind]), 75),
            "value": article_id,
        }
        for kind, action_id in SLACK_ACTIONS.items()
    ]
    return {"type": "actions", "elements": elements}


def _text_sections(value: str) -> list[Block]:
    """Plain text as mrkdwn sections, each within Slack's limit, split at line ends."""
    blocks: list[Block] = []
    current = ""
    for line in value.split("\n"):
        escaped = _fit(line, SLACK_SECTION_CHARS)
        candidate = f"{current}\n{escaped}" if current else escaped
        if current and utf16_len(candidate) > SLACK_SECTION_CHARS:
            blocks.append(_section(current))
            candidate = escaped
        current = candidate
    if current.strip():
        blocks.append(_section(current))
    return blocks or [_section(" ")]


def _pack(
    head: list[Block], groups: Sequence[tuple[list[Block], str]], fallback: str
) -> list[SlackMessage]:
    """Whole groups of blocks (an item, a notice chunk) into messages of at most 50 blocks."""
    messages_out: list[SlackMessage] = []
    blocks: list[Block] = list(head)
    texts: list[str] = [fallback]
    for group, plain_text in groups:
        if blocks and len(blocks) + len(group) > SLACK_MAX_BLOCKS:
            messages_out.append(SlackMessage(_fallback("\n".join(texts)), tuple(blocks)))
            blocks, texts = [], []
        blocks.extend(group)
        texts.append(plain_text)
    if blocks:
        messages_out.append(SlackMessage(_fallback("\n".join(texts)), tuple(blocks)))
    return messages_out


def _fallback(value: str) -> str:
    return _fit(value.strip() or "newsbot", SLACK_FALLBACK_CHARS)


def slack_blocks(post: Post) -> list[SlackMessage]:
    """Block Kit messages for a post: ≤ 50 blocks each, sections ≤ 3,000 characters, every
    message with a plain-text fallback; long digests split at item boundaries."""
    if isinstance(post, Notice):
        chunks = [([block], "") for block in _text_sections(post.text)]
        return _pack([], chunks, post.text)
    if isinstance(post, Answer):
        return [_slack_answer(post)]
    if isinstance(post, Alert):
        # The title goes in the (escaped) section: the header is the same for every alert.
        header = {"type": "header", "text": _plain_block(f"🚨 {text(post.lang, 'alert')}", 150)}
        blocks = [header, *_item_blocks(post.item, post.lang)]
        buttons = _alert_buttons(post)
        if buttons is not None:
            blocks.append(buttons)
        return [SlackMessage(_fallback(plain(post)), tuple(blocks))]
    return _slack_digest(post)


def _slack_answer(answer: Answer) -> SlackMessage:
    if answer.text is None:
        return SlackMessage(
            _fallback(text(answer.lang, "dont_know")),
            (_section(mrkdwn_escape(text(answer.lang, "dont_know"))),),
        )
    lines = [f"*{_fit(answer.text, 1000)}*"]
    if answer.sentence and answer.sentence.strip() != answer.text.strip():
        lines.append(f"_“{_fit(answer.sentence.strip(), 1800)}”_")
    blocks: list[Block] = [_section("\n".join(lines))]
    for source in answer.sources[:1]:
        when = f" ({source.date})" if source.date else ""
        label = _slack_link(source.url, source.title) if source.url else _fit(source.title, 500)
        ref = "" if source.url else f" `{_fit(source.id, 200)}`"
        context = f"{text(answer.lang, 'source')}: {label}{mrkdwn_escape(when)}{ref}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return SlackMessage(_fallback(_plain_answer(answer)), tuple(blocks))


def _slack_digest(digest: Digest) -> list[SlackMessage]:
    lang = digest.lang
    if not digest.items:
        empty = text(lang, "empty")
        return [SlackMessage(empty, (_section(mrkdwn_escape(empty)),))]
    emoji, name, count = _digest_heading(digest)
    title = f"{emoji} {name}{count}"
    if digest.since:
        title += ", " + text(lang, "since").format(since=f"{digest.since:%Y-%m-%d %H:%M}")
    head: list[Block] = [{"type": "header", "text": _plain_block(title, SLACK_HEADER_CHARS)}]
    groups: list[tuple[list[Block], str]] = []
    for topic, items in digest.groups():
        heading = _section(f"*— {_fit(topic or text(lang, 'other'), 200)} —*")
        for position, entry in enumerate(items):
            # A topic heading travels with its first item so no message ends in a bare heading.
            blocks = ([heading] if position == 0 else []) + _item_blocks(entry, lang)
            groups.append((blocks, f"• {entry.title}"))
    return _pack(head, groups, title)
