"""A loopback fake of the Telegram Bot API for tests, spoken to over real HTTP.

``FakeTelegram`` is an ``aiohttp.web`` server on ``127.0.0.1:<random port>`` that runs in the
test's own event loop. The real python-telegram-bot stack (``Application``/``Bot`` with its
``HTTPXRequest``) talks to it exactly as to ``api.telegram.org``::

    async with FakeTelegram(token=TOKEN, clock=clock) as tg:
        app = (
            ApplicationBuilder().token(TOKEN)
            .base_url(tg.base_url).base_file_url(tg.base_file_url).build()
        )
        tg.push_message(42, "/start")
        sent = await tg.wait_for_sent(1)

PTB appends the token to ``base_url`` (``http://127.0.0.1:PORT/bot`` + ``TOKEN``), then
``/<method>``. PTB 22 posts every call as ``application/x-www-form-urlencoded`` (strings as-is,
everything else JSON-encoded) or ``multipart/form-data`` when uploading; the fake also accepts
JSON bodies and query strings, as Telegram does, and method names case-insensitively.
For load tests, ``tg.request()`` is a PTB ``BaseRequest`` that runs the same code in-process
(``.request(tg.request()).get_updates_request(tg.request())``), about 10x faster than HTTP.

The API at a glance:

- Build: ``user(id, ...)``, ``chat(id, chat_type=..., is_forum=...)``, ``user_message(chat_id,
  text, user=, chat_type=, reply_to=, thread_id=, language_code=)``, ``callback_query(chat_id,
  message_id, data)``, ``make_update(message=...)``.
- Feed: ``push_update(message=...)``, ``push_message(...)``, ``push_callback_query(...)``,
  ``deliver_webhook(url, update, secret_token)``.
- Script: ``script(method, *actions, chat_id=None)`` with ``FakeError`` (``too_many_requests``,
  ``blocked``, ``migrated``, ``conflict``, ``server_error``), ``FakeDelay``, ``DropConnection``,
  ``FakeResult``; standing state: ``block``/``unblock``, ``migrate_chat``, ``set_admins``,
  ``set_member_status``.
- Observe: ``calls``, ``calls_to(method)``, ``sent``, ``rejected_429`` (and which limit each
  was for: ``rejections``, ``rejected_kinds``), ``callback_answers``,
  ``commands``/``my_commands()``, ``messages``, ``webhook``, ``unhandled``; wait with
  ``wait_for_sent(n)``, ``wait_for_calls(method, n)``, ``wait_until_fetched()``,
  ``wait_for(predicate)`` (event-driven, real-time timeout, no polling sleeps).

What it fakes:

- ``getMe``, ``getUpdates`` (long polling on an ``asyncio.Event``; ``offset`` confirms and drops
  updates; ``allowed_updates`` is remembered and, as on Telegram, only filters updates created
  after it was set (see ``dropped_updates``); a newer ``getUpdates`` ends a waiting one with 409
  "terminated by other getUpdates request"; 409 while a webhook is set), ``setWebhook``,
  ``deleteWebhook``, ``getWebhookInfo``, ``sendMessage``, ``editMessageText``,
  ``editMessageReplyMarkup``, ``deleteMessage``, ``sendChatAction``, ``answerCallbackQuery``,
  ``setMyCommands``/``getMyCommands``/``deleteMyCommands`` (per scope and language_code),
  ``getChat``, ``getChatMember``, ``getChatAdministrators``, ``close``, ``logOut``.
- Errors shaped like Telegram's (``{"ok": false, "error_code", "description", "parameters"}``
  with the same HTTP status), so PTB raises its real exceptions: 429 + ``retry_after`` ->
  ``RetryAfter``; 403 -> ``Forbidden``; 400 + ``migrate_to_chat_id`` -> ``ChatMigrated``;
  400 -> ``BadRequest``; 409 -> ``Conflict``; 401/404 -> ``InvalidToken``; 5xx and dropped
  connections -> ``NetworkError``; a scripted delay longer than the client's read timeout ->
  ``TimedOut``.
- ``parse_mode="HTML"`` parsed strictly (Telegram's tags and entities only); text length counted
  in UTF-16 code units of the *visible* text (tags removed, entities decoded, leading/trailing
  whitespace trimmed as Telegram does), limit 4096.
- Flood control on ``sendMessage``/``editMessageText`` with an injected clock (see
  ``RateLimits``).

Documented deviations from Telegram:

- HTML is stricter than Telegram: a bare ``&`` that starts no entity is rejected (Telegram keeps
  it literally); pass ``strict_html=False`` for Telegram's leniency. A bare ``>`` is accepted, as
  Telegram does. Nesting rules between entity kinds (e.g. no ``<b>`` inside ``<code>``) are not
  checked. Error texts follow TDLib's wording ("Unsupported start tag "x" at byte offset N",
  "Can't find end tag corresponding to start tag "b"", ...); the bare-``&`` text is our own.
- ``Markdown``/``MarkdownV2`` are not parsed: the raw text is counted and stored.
- Flood control is deterministic and strict (``RateLimits``): at most 1 message per chat per
  ``per_chat_interval`` (1 s, no burst), 30/s overall (sliding 1 s window), 20 per sliding
  minute to any negative chat id (group, supergroup, channel). ``retry_after`` is the whole
  seconds (rounded up, at least 1) until the window frees. Real Telegram allows short bursts and
  its limits are undocumented. Only accepted calls use up quota. A 429 with ``retry_after`` N
  that you *script* on a sending method also starts a bot-wide flood wait: every
  ``sendMessage``/``editMessageText`` in the next N seconds gets 429 too.
- Chats are created on first use from the sign of their id (positive: private; ``-100...``:
  supergroup; other negative: group), so sending to an unknown chat never fails with
  "chat not found" (except ``@username`` ids that no chat has).
- Pushed updates are only served through ``getUpdates``; with a webhook set they are not posted
  automatically (use ``deliver_webhook``).
- The clock only drives rate limits and recorded times; long-poll timeouts and scripted delays use
  real (event-loop) time. ``date`` fields come from ``wall_clock`` (default ``time.time``).
- When the client drops a request (e.g. PTB's read timeout fires), the server handler is
  cancelled, so a call whose effect comes after a scripted delay does not happen.
- Only ``InlineKeyboardMarkup`` is echoed in returned messages (as Telegram does); other markups
  are recorded in ``sent`` but not echoed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

JSON = dict[str, Any]

__all__ = [
    "Call",
    "DropConnection",
    "FakeDelay",
    "FakeError",
    "FakeResult",
    "FakeTelegram",
    "HtmlParseError",
    "RateLimits",
    "SentMessage",
    "VirtualClock",
    "parse_html",
    "utf16_len",
]

MAX_MESSAGE_UTF16 = 4096
SENDING_METHODS = frozenset({"sendMessage", "editMessageText"})
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)  # Telegram's default: everything except chat_member, message_reaction(_count).

CONFLICT_POLLING = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
BLOCKED = "Forbidden: bot was blocked by the user"
MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: CONFLICT_POLLING,
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of Telegram's limits and offsets."""
    return len(text.encode("utf-16-le")) // 2


class VirtualClock:
    """A manually advanced monotonic clock to inject as ``FakeTelegram(clock=...)``."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        self.now += seconds
        return self.now


# Which limit a 429 was for (`FakeTelegram.rejections`).
GLOBAL = "global"  # more than `global_per_second` in a sliding 1 s window
PER_CHAT = "per_chat"  # a chat's second message within `per_chat_interval`
GROUP = "group"  # more than `group_per_minute` to one group in a sliding minute
FLOOD_WAIT = "flood_wait"  # inside the bot-wide flood wait a scripted 429 started
SCRIPTED = "scripted"  # a scripted FakeError with status 429


@dataclass(frozen=True)
class Rejection:
    """One 429 answered: when (fake clock), for which limit, to which chat (None: unknown)."""

    time: float
    kind: str
    chat_id: int | None
    # How many accepted sends the sliding 1 s window held at the time (GLOBAL's count).
    in_window: int


@dataclass(frozen=True)
class RateLimits:
    """Flood-control limits the fake enforces on sendMessage/editMessageText."""

    global_per_second: int = 30
    per_chat_interval: float = 1.0
    group_per_minute: int = 20
    enabled: bool = True


# --------------------------------------------------------------------------- scripting


@dataclass(frozen=True)
class FakeError:
    """Answer the next matching call with a Telegram error.

    ``delivered=True`` applies the call first (e.g. the message is sent) and then fails it.
    """

    status: int
    description: str | None = None
    retry_after: int | None = None
    migrate_to_chat_id: int | None = None
    delivered: bool = False

    @classmethod
    def too_many_requests(cls, retry_after: int) -> FakeError:
        """429 with parameters.retry_after, as Telegram's flood control answers."""
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    @classmethod
    def blocked(cls) -> FakeError:
        """403 "bot was blocked by the user"."""
        return cls(403, BLOCKED)

    @classmethod
    def migrated(cls, new_chat_id: int) -> FakeError:
        """400 with parameters.migrate_to_chat_id (group upgraded to a supergroup)."""
        return cls(400, MIGRATED, migrate_to_chat_id=new_chat_id)

    @classmethod
    def conflict(cls) -> FakeError:
        """409 "terminated by other getUpdates request"."""
        return cls(409, CONFLICT_POLLING)

    @classmethod
    def server_error(cls, status: int = 502) -> FakeError:
        """A 5xx from Telegram's front end."""
        return cls(status)

    def body(self) -> JSON:
        """The JSON body Telegram would answer with."""
        description = self.description or _DEFAULT_DESCRIPTIONS.get(self.status, "Error")
        body: JSON = {"ok": False, "error_code": self.status, "description": description}
        parameters: JSON = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            body["parameters"] = parameters
        return body


@dataclass(frozen=True)
class FakeDelay:
    """Answer the next matching call after ``seconds`` of real time.

    ``delivered=True``: the call takes effect at once and only the answer is late (a ``TimedOut``
    on the client then hides a message that *was* sent). ``delivered=False``: the call is applied
    after the delay, and not at all if the client gave up meanwhile.
    """

    seconds: float
    delivered: bool = False


@dataclass(frozen=True)
class DropConnection:
    """Close the TCP connection without answering (``delivered=True``: after applying)."""

    delivered: bool = False


@dataclass(frozen=True)
class FakeResult:
    """Answer the next matching call with ``{"ok": true, "result": result}`` unprocessed."""

    result: Any = True


Action = FakeError | FakeDelay | DropConnection | FakeResult


@dataclass
class _Scripted:
    method: str
    chat_id: int | str | None
    action: Action


# --------------------------------------------------------------------------- records


@dataclass
class Call:
    """One HTTP request the fake received, in arrival order."""

    method: str
    params: JSON
    time: float
    content_type: str
    http_method: str
    status: int | None = None  # HTTP status answered; None while pending or when dropped

    @property
    def chat_id(self) -> Any:
        """The call's chat_id parameter, if any."""
        return self.params.get("chat_id")


@dataclass
class SentMessage:
    """A sendMessage/editMessageText the fake accepted."""

    method: str
    chat_id: int
    text: str  # as sent, markup included
    visible_text: str  # after entity parsing and trimming
    parse_mode: str | None
    reply_markup: JSON | None
    message_thread_id: int | None
    link_preview_options: JSON | None
    disable_web_page_preview: bool | None
    reply_to_message_id: int | None
    message_id: int
    time: float
    params: JSON = field(repr=False, default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.error = FakeError(
            status,
            description,
            retry_after=parameters.get("retry_after"),
            migrate_to_chat_id=parameters.get("migrate_to_chat_id"),
        )


# --------------------------------------------------------------------------- HTML


class HtmlParseError(ValueError):
    """Telegram would answer "Bad Request: can't parse entities: <message>"."""


_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_NAME_RE = re.compile(r"[A-Za-z0-9_-]*")
_SPACE = " \t\r\n"


def _decode_entities(text: str, *, strict: bool, base: str, offset: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "&":
            m = _ENTITY_RE.match(text, i)
            if m:
                named, dec, hexa = m.groups()
                if named:
                    out.append(_NAMED_ENTITIES[named])
                else:
                    code = int(dec) if dec else int(hexa, 16)
                    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise HtmlParseError(
                            f"Invalid character entity at byte offset {_byte(base, offset + i)}"
                        )
                    out.append(chr(code))
                i = m.end()
                continue
            if strict:
                raise HtmlParseError(
                    "Character entity expected: escape '&' as '&amp;' "
                    f"at byte offset {_byte(base, offset + i)}"
                )
        out.append(c)
        i += 1
    return "".join(out)


def _byte(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def parse_html(src: str, *, strict: bool = True) -> tuple[str, list[JSON]]:
    """Parse Telegram HTML into (visible text, entities with UTF-16 offsets).

    Raises ``HtmlParseError`` where Telegram answers "can't parse entities".
    """
    out: list[str] = []
    pos16 = 0
    entities: list[JSON] = []
    # stack entries: (tag name, utf16 start, entity or None)
    stack: list[tuple[str, int, JSON | None]] = []
    i = 0
    n = len(src)
    while i < n:
        lt = src.find("<", i)
        chunk_end = n if lt < 0 else lt
        if chunk_end > i:
            text = _decode_entities(src[i:chunk_end], strict=strict, base=src, offset=i)
            out.append(text)
            pos16 += utf16_len(text)
        if lt < 0:
            break
        begin = lt
        i = lt + 1
        if i < n and src[i] == "/":
            m = _NAME_RE.match(src, i + 1)
            assert m is not None
            name = m.group().lower()
            j = m.end()
            while j < n and src[j] in _SPACE:
                j += 1
            if j >= n or src[j] != ">":
                raise HtmlParseError(f"Unclosed end tag at byte offset {_byte(src, begin)}")
            if not stack:
                raise HtmlParseError(f"Unexpected end tag at byte offset {_byte(src, begin)}")
            top, start16, entity = stack[-1]
            if name != top:
                raise HtmlParseError(
                    f"Unmatched end tag at byte offset {_byte(src, begin)}, "
                    f'expected "</{top}>", found "</{name}>"'
                )
            stack.pop()
            if entity is not None and pos16 > start16:
                entity["offset"] = start16
                entity["length"] = pos16 - start16
                entities.append(entity)
            i = j + 1
            continue
        m = _NAME_RE.match(src, i)
        assert m is not None
        name = m.group().lower()
        if name not in _TAG_ENTITY:
            raise HtmlParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte(src, begin)}'
            )
        i = m.end()
        attrs: dict[str, str] = {}
        while True:
            while i < n and src[i] in _SPACE:
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {_byte(src, begin)}")
            if src[i] == ">":
                i += 1
                break
            am = _NAME_RE.match(src, i)
            assert am is not None
            attr = am.group().lower()
            if not attr:
                raise HtmlParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset {_byte(src, begin)}'
                )
            i = am.end()
            while i < n and src[i] in _SPACE:
                i += 1
            value = ""
            if i < n and src[i] == "=":
                i += 1
                while i < n and src[i] in _SPACE:
                    i += 1
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {_byte(src, begin)}")
                if src[i] in "\"'":
                    close = src.find(src[i], i + 1)
                    if close < 0:
                        raise HtmlParseError(
                            f"Unclosed start tag at byte offset {_byte(src, begin)}"
                        )
                    raw, start = src[i + 1 : close], i + 1
                    i = close + 1
                else:
                    vm = re.compile(r"[^\s>]*").match(src, i)
                    assert vm is not None
                    raw, start = vm.group(), i
                    i = vm.end()
                value = _decode_entities(raw, strict=strict, base=src, offset=start)
            attrs[attr] = value
        entity = _start_entity(name, attrs, stack, src, begin)
        stack.append((name, pos16, entity))
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _start_entity(
    name: str, attrs: dict[str, str], stack: list[tuple[str, int, JSON | None]], src: str, at: int
) -> JSON | None:
    kind = _TAG_ENTITY[name]
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise HtmlParseError(
            f'Tag "span" must have class "tg-spoiler" at byte offset {_byte(src, at)}'
        )
    if name == "a":
        href = attrs.get("href")
        if not href:
            return None  # Telegram keeps the text and drops the link
        user = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if user:
            return {"type": "text_mention", "user": {"id": int(user.group(1))}}
        return {"type": "text_link", "url": href}
    if name == "tg-emoji":
        emoji_id = attrs.get("emoji-id")
        if not emoji_id:
            raise HtmlParseError(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {_byte(src, at)}'
            )
        return {"type": kind, "custom_emoji_id": emoji_id}
    if name == "code" and stack and stack[-1][0] == "pre":
        language = attrs.get("class", "")
        pre = stack[-1][2]
        if language.startswith("language-") and pre is not None:
            pre["language"] = language.removeprefix("language-")
            return None
    if name == "blockquote" and "expandable" in attrs:
        return {"type": "expandable_blockquote"}
    return {"type": kind}


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Strip leading/trailing whitespace as Telegram does, shifting and clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    kept: list[JSON] = []
    for e in entities:
        start = max(e["offset"] - lead, 0)
        end = min(e["offset"] + e["length"] - lead, total)
        if end > start:
            kept.append({**e, "offset": start, "length": end - start})
    return stripped, kept


# --------------------------------------------------------------------------- parameters

_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
        "commands",
        "scope",
        "media",
        "message_ids",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "user_id",
        "message_thread_id",
        "reply_to_message_id",
        "cache_time",
        "max_connections",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_web_page_preview",
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "allow_paid_broadcast",
    }
)


def _normalize(params: Mapping[str, Any]) -> JSON:
    """Turn form strings into the types Telegram reads them as."""
    out: JSON = {}
    for key, value in params.items():
        if isinstance(value, str):
            if key in _JSON_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError:
                    raise _ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
            elif key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
                value = int(value)
            elif key == "timeout" and re.fullmatch(r"\d+(\.\d*)?", value):
                value = float(value)
            elif key in _BOOL_FIELDS and value.lower() in ("true", "false", "1", "0"):
                value = value.lower() in ("true", "1")
        out[key] = value
    return out


def _reply_to_id(params: JSON) -> int | None:
    rp = params.get("reply_parameters")
    if isinstance(rp, dict) and "message_id" in rp:
        return int(rp["message_id"])
    rid = params.get("reply_to_message_id")
    return int(rid) if rid is not None else None


_COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def _command_entities(text: str) -> list[JSON]:
    return [
        {
            "type": "bot_command",
            "offset": utf16_len(text[: m.start()]),
            "length": utf16_len(m.group()),
        }
        for m in _COMMAND_RE.finditer(text)
    ]


def _ceil_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A fake Telegram Bot API server on 127.0.0.1, used as an async context manager."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rate_limits: RateLimits | None = None,
        strict_html: bool = True,
        bot_username: str = "FakeNewsBot",
        first_update_id: int = 100_000,
        port: int = 0,
    ) -> None:
        self.token = token
        self.port = port  # 0: any free port, known after start
        self.clock = clock
        self.wall_clock = wall_clock
        self.rate_limits = rate_limits if rate_limits is not None else RateLimits()
        self.strict_html = strict_html
        bot_id = token.split(":", 1)[0]
        self.bot_user: JSON = {
            "id": int(bot_id) if bot_id.isdigit() else 1,
            "is_bot": True,
            "first_name": "Fake News Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        # records
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.rejected_429 = 0
        self.rejections: list[Rejection] = []
        self.unhandled: list[str] = []  # methods the fake does not implement (answered 404)
        self.callback_answers: dict[str, JSON] = {}
        self.webhook_deliveries: list[tuple[str, int, int]] = []  # (url, update_id, status)
        self.dropped_updates: list[JSON] = []  # pushed while allowed_updates excluded their kind
        # state
        self.webhook: JSON | None = None
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.chats: dict[int, JSON] = {}
        self.messages: dict[tuple[int, int], JSON] = {}
        self._next_message_id: dict[int, itertools.count[int]] = {}
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(first_update_id)
        self._fetched_up_to = first_update_id - 1  # highest update_id handed out by getUpdates
        self._allowed_updates = DEFAULT_ALLOWED_UPDATES
        self._poll_generation = 0
        self._script: list[_Scripted] = []
        self._admins: dict[int, set[int]] = {}
        self._creators: dict[int, int] = {}
        self._member_status: dict[tuple[int, int], str] = {}
        self._blocked: set[int] = set()
        self._migrated: dict[int, int] = {}
        self._users: dict[int, JSON] = {}
        self._callback_ids = itertools.count(7_000_000)
        self._open_queries: set[str] = set()
        # flood control
        self._global_sends: collections.deque[float] = collections.deque()
        self._chat_last_send: dict[int, float] = {}
        self._group_sends: dict[int, collections.deque[float]] = {}
        self._flood_until = -math.inf
        # server
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[JSON], Any]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._true,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "close": self._true,
            "logOut": self._true,
        }
        self._canonical = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        # handler_cancellation: a client that gives up (read timeout) cancels its handler, so
        # a pending long poll or scripted delay never outlives the request that started it.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """Value for ``ApplicationBuilder().base_url(...)``; PTB appends the token."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Value for ``ApplicationBuilder().base_file_url(...)``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ------------------------------------------------------------------ scripting

    def script(self, method: str, *actions: Action, chat_id: int | str | None = None) -> None:
        """Make the next ``len(actions)`` calls of ``method`` (to ``chat_id`` if given) do these."""
        canonical = self._canonical.get(method.lower(), method)
        self._script.extend(_Scripted(canonical, chat_id, a) for a in actions)

    def _take_script(self, method: str, params: JSON) -> Action | None:
        for index, entry in enumerate(self._script):
            if entry.method != method:
                continue
            if entry.chat_id is not None and params.get("chat_id") != entry.chat_id:
                continue
            del self._script[index]
            return entry.action
        return None

    @property
    def pending_script(self) -> list[tuple[str, Action]]:
        """Scripted actions not consumed yet."""
        return [(s.method, s.action) for s in self._script]

    def block(self, chat_id: int, *, notify: bool = False) -> None:
        """The user of private chat ``chat_id`` blocks the bot: sends get 403 until unblocked.

        ``notify=True`` also queues the ``my_chat_member`` update Telegram sends.
        """
        self._blocked.add(chat_id)
        if notify:
            self._push_my_chat_member(chat_id, "member", "kicked")

    def unblock(self, chat_id: int, *, notify: bool = False) -> None:
        """The user unblocks the bot (also implied by the user writing to the bot)."""
        self._blocked.discard(chat_id)
        if notify:
            self._push_my_chat_member(chat_id, "kicked", "member")

    def migrate_chat(self, old_chat_id: int, new_chat_id: int) -> None:
        """Upgrade group ``old_chat_id`` to supergroup ``new_chat_id``: sends to the old id fail
        with 400 + migrate_to_chat_id from now on."""
        self._migrated[old_chat_id] = new_chat_id
        self.chat(new_chat_id, chat_type="supergroup", title=self.chat(old_chat_id).get("title"))

    def set_admins(
        self, chat_id: int, user_ids: Iterable[int], *, creator: int | None = None
    ) -> None:
        """Set who getChatMember reports as "administrator" (and "creator") in ``chat_id``."""
        self._admins[chat_id] = set(user_ids)
        if creator is not None:
            self._creators[chat_id] = creator

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """Override getChatMember's status ("left", "kicked", "restricted", ...)."""
        self._member_status[(chat_id, user_id)] = status

    # ------------------------------------------------------------------ builders

    def user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> JSON:
        """Return (and remember) a User object."""
        existing = self._users.get(user_id, {"id": user_id, "is_bot": False})
        user = {
            **existing,
            "first_name": first_name or existing.get("first_name", f"User{user_id}"),
        }
        for key, value in (
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
        ):
            if value is not None:
                user[key] = value
        self._users[user_id] = user
        return user

    def chat(
        self,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        username: str | None = None,
        is_forum: bool | None = None,
    ) -> JSON:
        """Return (and register) the Chat object for ``chat_id``; the type follows its sign."""
        chat = self.chats.get(chat_id)
        if chat is None:
            kind = chat_type or (
                "private"
                if chat_id > 0
                else "supergroup"
                if str(chat_id).startswith("-100")
                else "group"
            )
            chat = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = self._users.get(chat_id, {}).get(
                    "first_name", f"User{chat_id}"
                )
            else:
                chat["title"] = title or f"Chat {chat_id}"
            self.chats[chat_id] = chat
        elif chat_type is not None and chat_type != chat["type"]:
            chat["type"] = chat_type
            if chat_type != "private":
                chat.pop("first_name", None)
                chat.setdefault("title", title or f"Chat {chat_id}")
        if title is not None and chat["type"] != "private":
            chat["title"] = title
        if username is not None:
            chat["username"] = username
        if is_forum:
            chat["is_forum"] = True
        return chat

    def _new_message_id(self, chat_id: int) -> int:
        return next(self._next_message_id.setdefault(chat_id, itertools.count(1)))

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user: JSON | int | None = None,
        chat_type: str | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        language_code: str | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """Build a Message from a user (a post for channels); ``/commands`` get entities."""
        chat = self.chat(chat_id, chat_type=chat_type, is_forum=thread_id is not None or None)
        msg: JSON = {
            "message_id": self._new_message_id(chat_id),
            "date": int(self.wall_clock()),
            "chat": dict(chat),
            "text": text,
        }
        if chat["type"] == "channel":
            msg["sender_chat"] = dict(chat)
        else:
            if isinstance(user, dict):
                sender = user
            else:
                uid = user if isinstance(user, int) else (chat_id if chat_id > 0 else 1_000_001)
                sender = self.user(uid, language_code=language_code)
            if language_code is not None and sender.get("language_code") != language_code:
                sender = self.user(sender["id"], language_code=language_code)
            msg["from"] = sender
        ents = entities if entities is not None else _command_entities(text)
        if ents:
            msg["entities"] = ents
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if reply_to is not None:
            msg["reply_to_message"] = self._known_message(chat_id, reply_to)
        self.messages[(chat_id, msg["message_id"])] = msg
        if chat["type"] == "private":
            self._blocked.discard(chat_id)  # writing to the bot unblocks it
        return msg

    def callback_query(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user: JSON | int | None = None,
    ) -> JSON:
        """Build a CallbackQuery for a button under message ``message_id`` in ``chat_id``."""
        if isinstance(user, dict):
            sender = user
        else:
            sender = self.user(
                user if isinstance(user, int) else (chat_id if chat_id > 0 else 1_000_001)
            )
        query_id = str(next(self._callback_ids))
        self._open_queries.add(query_id)
        return {
            "id": query_id,
            "from": sender,
            "message": self._known_message(chat_id, message_id),
            "chat_instance": str(abs(chat_id) * 7 + 13),
            "data": data,
        }

    def _known_message(self, chat_id: int, message_id: int) -> JSON:
        msg = self.messages.get((chat_id, message_id))
        if msg is not None:
            return {k: v for k, v in msg.items() if k != "reply_to_message"}
        return {
            "message_id": message_id,
            "date": int(self.wall_clock()),
            "chat": dict(self.chat(chat_id)),
            "from": self.bot_user,
            "text": "",
        }

    def make_update(self, **payload: JSON) -> JSON:
        """Wrap one payload (``message=...``, ``callback_query=...``) into an Update."""
        if len(payload) != 1:
            raise TypeError("pass exactly one update kind, e.g. message=tg.user_message(...)")
        return {"update_id": next(self._update_ids), **payload}

    def push_update(self, update: JSON | None = None, **payload: JSON) -> JSON:
        """Queue an Update for getUpdates: ``push_update(message=...)`` or a full update dict."""
        if update is None:
            update = self.make_update(**payload)
        if self._kind(update) in self._allowed_updates:
            self._updates.append(update)
        else:  # Telegram does not create updates of kinds the bot did not ask for
            self.dropped_updates.append(update)
        self._notify()
        return update

    def push_message(self, chat_id: int, text: str, **kwargs: Any) -> JSON:
        """Queue a user's message (see ``user_message`` for the options); returns the Update."""
        msg = self.user_message(chat_id, text, **kwargs)
        kind = "channel_post" if msg["chat"]["type"] == "channel" else "message"
        return self.push_update(**{kind: msg})

    def push_callback_query(self, chat_id: int, message_id: int, data: str, **kwargs: Any) -> JSON:
        """Queue a button press; returns the Update (query id: ``["callback_query"]["id"]``)."""
        return self.push_update(
            callback_query=self.callback_query(chat_id, message_id, data, **kwargs)
        )

    def _push_my_chat_member(self, chat_id: int, old: str, new: str) -> None:
        user = self.user(chat_id)
        self.push_update(
            my_chat_member={
                "chat": dict(self.chat(chat_id)),
                "from": user,
                "date": int(self.wall_clock()),
                "old_chat_member": self._member_object(self.bot_user, old),
                "new_chat_member": self._member_object(self.bot_user, new),
            }
        )

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - the deadline is part of the helper's contract
        """Wait (real time) until ``predicate()`` holds; re-checked after every server event."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"FakeTelegram: condition not met within {timeout}s; "
                f"calls={[c.method for c in self.calls][-20:]}, "
                f"sent={[(s.chat_id, s.visible_text[:40]) for s in self.sent][-10:]}"
            ) from None

    async def wait_for_sent(
        self,
        n: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the deadline is part of the helper's contract
        chat_id: int | None = None,
    ) -> list[SentMessage]:
        """Wait until at least ``n`` messages were accepted (to ``chat_id`` if given)."""

        def matching() -> list[SentMessage]:
            return [s for s in self.sent if chat_id is None or s.chat_id == chat_id]

        await self.wait_for(lambda: len(matching()) >= n, timeout=timeout)
        return matching()

    async def wait_for_calls(self, method: str, n: int = 1, *, timeout: float = 5.0) -> list[Call]:  # noqa: ASYNC109 - the deadline is part of the helper's contract
        """Wait until ``method`` was answered at least ``n`` times; returns those calls."""
        await self.wait_for(
            lambda: len([c for c in self.calls_to(method) if c.status is not None]) >= n,
            timeout=timeout,
        )
        return self.calls_to(method)

    async def wait_until_fetched(self, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - the deadline is part of the helper's contract
        """Wait until every pushed update was handed out by getUpdates."""
        await self.wait_for(lambda: not self._unfetched(), timeout=timeout)

    def _unfetched(self) -> list[JSON]:
        return [u for u in self._updates if u["update_id"] > self._fetched_up_to]

    def calls_to(self, method: str) -> list[Call]:
        """Every received call of ``method``, in order."""
        canonical = self._canonical.get(method.lower(), method)
        return [c for c in self.calls if c.method == canonical]

    # ------------------------------------------------------------------ webhook delivery

    async def deliver_webhook(
        self,
        url: str,
        update: JSON,
        secret_token: str | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - the deadline is part of the helper's contract
    ) -> int:
        """POST ``update`` to the bot's webhook as Telegram does; returns the HTTP status."""
        headers = {}
        if secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, json=update, headers=headers) as response,
        ):
            await response.read()
            status = response.status
        self.webhook_deliveries.append((url, int(update.get("update_id", 0)), status))
        return status

    # ------------------------------------------------------------------ HTTP

    async def _file(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    async def _read_params(self, request: web.Request) -> JSON:
        params: dict[str, Any] = dict(request.query)
        if request.body_exists:
            ctype = request.content_type
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise _ApiError(400, "Bad Request: JSON object expected")
                params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        params[key] = {"filename": value.filename, "content": value.file.read()}
                    else:
                        params[key] = value
        return _normalize(params)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        outcome = await self._process(
            request.match_info["token"],
            request.match_info["method"],
            lambda: self._read_params(request),
            content_type=request.content_type if request.body_exists else "",
            http_method=request.method,
        )
        if outcome is None:
            if request.transport is not None:
                request.transport.abort()
            # Nothing more can be written; a raised error would only be logged by aiohttp.
            return web.Response(status=204)
        status, body = outcome
        return web.json_response(body, status=status)

    async def _process(
        self,
        token: str,
        raw_method: str,
        load_params: Callable[[], Awaitable[JSON]],
        *,
        content_type: str,
        http_method: str,
    ) -> tuple[int, JSON] | None:
        """Run one API call; returns (HTTP status, body), or None to drop the connection."""
        method = self._canonical.get(raw_method.lower(), raw_method)
        call = Call(
            method=method,
            params={},
            time=self.clock(),
            content_type=content_type,
            http_method=http_method,
        )
        self.calls.append(call)
        try:
            call.params = await load_params()
            if token != self.token:
                raise _ApiError(401, "Unauthorized")
            handler = self._handlers.get(method)
            if handler is None:
                self.unhandled.append(raw_method)
                raise _ApiError(404, "Not Found")
            action = self._take_script(method, call.params)
            body, status = await self._run(handler, call, action)
        except _ApiError as exc:
            body, status = exc.error.body(), exc.error.status
        except _Dropped:
            call.status = None
            self._notify()
            return None
        if status == 429:
            self.rejected_429 += 1
        call.status = status
        self._notify()
        return status, body

    def request(self, *, read_timeout: float | None = 5.0) -> BaseRequest:
        """A PTB ``BaseRequest`` that calls this fake in-process, without HTTP.

        Same behaviour as over HTTP (scripting, limits, recording) at a fraction of the cost,
        for load tests: ``ApplicationBuilder().token(T).request(tg.request())
        .get_updates_request(tg.request())``. File uploads are not supported this way.
        """
        return _InProcessRequest(self, read_timeout)

    async def _run(
        self, handler: Callable[[JSON], Any], call: Call, action: Action | None
    ) -> tuple[JSON, int]:
        delivered = getattr(action, "delivered", False)
        if isinstance(action, FakeDelay) and not delivered:
            await asyncio.sleep(action.seconds)
        if isinstance(action, FakeResult):
            return {"ok": True, "result": action.result}, 200
        if isinstance(action, FakeError | DropConnection) and not delivered:
            result_body = None
        else:
            result = handler(call.params)
            if asyncio.iscoroutine(result):
                result = await result
            result_body = {"ok": True, "result": result}
        if isinstance(action, FakeDelay) and delivered:
            await asyncio.sleep(action.seconds)
        if isinstance(action, DropConnection):
            raise _Dropped
        if isinstance(action, FakeError):
            if action.status == 429:
                chat_id = call.params.get("chat_id")
                self._note_rejection(SCRIPTED, chat_id if isinstance(chat_id, int) else None)
            if action.status == 429 and action.retry_after and call.method in SENDING_METHODS:
                self._flood_until = max(self._flood_until, self.clock() + action.retry_after)
            return action.body(), action.status
        assert result_body is not None
        return result_body, 200

    # ------------------------------------------------------------------ methods

    def _true(self, params: JSON) -> bool:
        return True

    def _get_me(self, params: JSON) -> JSON:
        return self.bot_user

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook is not None:
            raise _ApiError(409, CONFLICT_WEBHOOK)
        offset = int(params.get("offset", 0) or 0)
        limit = min(max(int(params.get("limit", 100) or 100), 1), 100)
        timeout = float(params.get("timeout", 0) or 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        if offset < 0:
            self._updates = self._updates[offset:]
        elif offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        # A newer getUpdates terminates the one still waiting (Telegram's 409 on double polling).
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise _ApiError(409, CONFLICT_POLLING)
            batch = self._updates[:limit]
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        if batch:
            self._fetched_up_to = max(self._fetched_up_to, batch[-1]["update_id"])
        return batch

    @staticmethod
    def _kind(update: JSON) -> str:
        return next((k for k in update if k != "update_id"), "")

    def _set_webhook(self, params: JSON) -> bool:
        url = params.get("url", "")
        if not url:
            return self._delete_webhook(params)
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "max_connections": int(params.get("max_connections", 40)),
            "allowed_updates": params.get("allowed_updates"),
        }
        if isinstance(params.get("allowed_updates"), list):
            self._allowed_updates = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED_UPDATES
        self._notify()
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._unfetched()),
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"]:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    # sending --------------------------------------------------------------

    def _resolve_chat(self, params: JSON) -> JSON:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(raw, str):
            name = raw.removeprefix("@").lower()
            for chat in self.chats.values():
                if str(chat.get("username", "")).lower() == name:
                    return chat
            raise _ApiError(400, "Bad Request: chat not found")
        chat_id = int(raw)
        if chat_id in self._migrated:
            raise _ApiError(400, MIGRATED, migrate_to_chat_id=self._migrated[chat_id])
        if chat_id in self._blocked:
            raise _ApiError(403, BLOCKED)
        return self.chat(chat_id)

    def _render(self, params: JSON) -> tuple[str, list[JSON]]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        parse_mode = str(params.get("parse_mode") or "")
        if parse_mode.upper() == "HTML":
            try:
                visible, entities = parse_html(text, strict=self.strict_html)
            except HtmlParseError as exc:
                raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
        else:
            visible, entities = text, list(params.get("entities") or [])
        visible, entities = _trim(visible, entities)
        if not visible:
            raise _ApiError(400, "Bad Request: message text is empty")
        if utf16_len(visible) > MAX_MESSAGE_UTF16:
            raise _ApiError(400, "Bad Request: message is too long")
        return visible, entities

    def _check_thread(self, chat: JSON, params: JSON) -> int | None:
        thread = params.get("message_thread_id")
        if thread is None:
            return None
        if not chat.get("is_forum"):
            raise _ApiError(400, "Bad Request: message thread not found")
        return int(thread)

    def _check_flood(self, chat_id: int) -> None:
        limits = self.rate_limits
        if not limits.enabled:
            return
        now = self.clock()
        if now < self._flood_until:
            self._too_many(FLOOD_WAIT, chat_id, self._flood_until - now)
        window = self._global_sends
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limits.global_per_second:
            self._too_many(GLOBAL, chat_id, window[0] + 1.0 - now)
        last = self._chat_last_send.get(chat_id)
        if last is not None and now - last < limits.per_chat_interval:
            self._too_many(PER_CHAT, chat_id, last + limits.per_chat_interval - now)
        if chat_id < 0:
            group = self._group_sends.setdefault(chat_id, collections.deque())
            while group and group[0] <= now - 60.0:
                group.popleft()
            if len(group) >= limits.group_per_minute:
                self._too_many(GROUP, chat_id, group[0] + 60.0 - now)

    @property
    def rejected_kinds(self) -> dict[str, int]:
        """How many 429s each limit drew ({"global": 1, "per_chat": 2}; none: {})."""
        return dict(collections.Counter(r.kind for r in self.rejections))

    def _note_rejection(self, kind: str, chat_id: int | None) -> None:
        now = self.clock()
        in_window = sum(1 for t in self._global_sends if t > now - 1.0)
        self.rejections.append(Rejection(now, kind, chat_id, in_window))

    def _too_many(self, kind: str, chat_id: int, seconds: float) -> None:
        self._note_rejection(kind, chat_id)
        retry = _ceil_seconds(seconds)
        raise _ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)

    def _use_quota(self, chat_id: int) -> float:
        now = self.clock()
        if self.rate_limits.enabled:
            self._global_sends.append(now)
            self._chat_last_send[chat_id] = now
            if chat_id < 0:
                self._group_sends.setdefault(chat_id, collections.deque()).append(now)
        return now

    @staticmethod
    def _inline_markup(params: JSON) -> JSON | None:
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            return markup
        return None

    def _record(self, method: str, chat_id: int, params: JSON, msg: JSON, now: float) -> None:
        self.sent.append(
            SentMessage(
                method=method,
                chat_id=chat_id,
                text=params.get("text", ""),
                visible_text=msg.get("text", ""),
                parse_mode=params.get("parse_mode"),
                reply_markup=params.get("reply_markup"),
                message_thread_id=params.get("message_thread_id"),
                link_preview_options=params.get("link_preview_options"),
                disable_web_page_preview=params.get("disable_web_page_preview"),
                reply_to_message_id=_reply_to_id(params),
                message_id=msg["message_id"],
                time=now,
                params=params,
            )
        )

    def _send_message(self, params: JSON) -> JSON:
        visible, entities = self._render(params)
        chat = self._resolve_chat(params)
        chat_id = chat["id"]
        thread = self._check_thread(chat, params)
        reply_to = _reply_to_id(params)
        reply_msg = None
        if reply_to is not None:
            reply_msg = self.messages.get((chat_id, reply_to))
            allow = params.get("allow_sending_without_reply") or (
                params.get("reply_parameters") or {}
            ).get("allow_sending_without_reply")
            if reply_msg is None and not allow:
                raise _ApiError(400, "Bad Request: message to be replied not found")
        self._check_flood(chat_id)
        now = self._use_quota(chat_id)
        msg: JSON = {
            "message_id": self._new_message_id(chat_id),
            "from": self.bot_user,
            "chat": dict(chat),
            "date": int(self.wall_clock()),
            "text": visible,
        }
        if entities:
            msg["entities"] = entities
        if thread is not None:
            msg["message_thread_id"] = thread
            msg["is_topic_message"] = True
        if reply_msg is not None:
            msg["reply_to_message"] = {
                k: v for k, v in reply_msg.items() if k != "reply_to_message"
            }
        if isinstance(params.get("link_preview_options"), dict):
            msg["link_preview_options"] = params["link_preview_options"]
        markup = self._inline_markup(params)
        if markup is not None:
            msg["reply_markup"] = markup
        self.messages[(chat_id, msg["message_id"])] = msg
        self._record("sendMessage", chat_id, params, msg, now)
        return msg

    def _find_own_message(self, params: JSON, verb: str) -> tuple[JSON, JSON]:
        if params.get("inline_message_id"):
            raise _ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self._resolve_chat(params)
        message_id = params.get("message_id")
        msg = self.messages.get((chat["id"], int(message_id))) if message_id is not None else None
        if msg is None:
            raise _ApiError(400, f"Bad Request: message to {verb} not found")
        if msg.get("from", {}).get("id") != self.bot_user["id"]:
            raise _ApiError(400, f"Bad Request: message can't be {verb}ed")
        return chat, msg

    def _edit_message_text(self, params: JSON) -> JSON | bool:
        visible, entities = self._render(params)
        chat, msg = self._find_own_message(params, "edit")
        markup = self._inline_markup(params)
        if (
            msg.get("text") == visible
            and msg.get("entities", []) == entities
            and msg.get("reply_markup") == markup
        ):
            raise _ApiError(400, NOT_MODIFIED)
        self._check_flood(chat["id"])
        now = self._use_quota(chat["id"])
        msg["text"] = visible
        msg["edit_date"] = int(self.wall_clock())
        if entities:
            msg["entities"] = entities
        else:
            msg.pop("entities", None)
        if markup is not None:
            msg["reply_markup"] = markup
        else:
            msg.pop("reply_markup", None)
        self._record("editMessageText", chat["id"], params, msg, now)
        return msg

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        _, msg = self._find_own_message(params, "edit")
        markup = self._inline_markup(params)
        if msg.get("reply_markup") == markup:
            raise _ApiError(400, NOT_MODIFIED)
        if markup is None:
            msg.pop("reply_markup", None)
        else:
            msg["reply_markup"] = markup
        return msg

    def _delete_message(self, params: JSON) -> bool:
        chat = self._resolve_chat(params)
        key = (chat["id"], int(params.get("message_id", 0)))
        if key not in self.messages:
            raise _ApiError(400, "Bad Request: message to delete not found")
        del self.messages[key]
        return True

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_queries:
            raise _ApiError(400, QUERY_TOO_OLD)
        self._open_queries.discard(query_id)
        self.callback_answers[query_id] = params
        return True

    # commands ---------------------------------------------------------------

    @staticmethod
    def _command_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: commands must be an array")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _ApiError(400, "Bad Request: command description is invalid")
        code = params.get("language_code")
        if code and not re.fullmatch(r"[a-z]{2}", str(code)):
            raise _ApiError(400, "Bad Request: invalid language code specified")
        self.commands[self._command_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _get_my_commands(self, params: JSON) -> list[JSON]:
        return self.commands.get(self._command_key(params), [])

    def _delete_my_commands(self, params: JSON) -> bool:
        self.commands.pop(self._command_key(params), None)
        return True

    def my_commands(self, language_code: str = "", scope: JSON | None = None) -> list[JSON]:
        """The command list stored for ``language_code`` and ``scope`` (default scope)."""
        return self._get_my_commands({"language_code": language_code, "scope": scope})

    # chats and members ----------------------------------------------------------

    def _get_chat(self, params: JSON) -> JSON:
        raw = params.get("chat_id")
        chat = self._resolve_chat(params) if isinstance(raw, str) else self.chat(int(raw or 0))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _member(self, chat_id: int, user_id: int) -> JSON:
        user = self.bot_user if user_id == self.bot_user["id"] else self.user(user_id)
        status = self._member_status.get((chat_id, user_id))
        if status is None:
            if self._creators.get(chat_id) == user_id:
                status = "creator"
            elif user_id in self._admins.get(chat_id, set()):
                status = "administrator"
            else:
                status = "member"
        return self._member_object(user, status)

    @staticmethod
    def _member_object(user: JSON, status: str) -> JSON:
        member: JSON = {"user": user, "status": status}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                {
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
            )
        elif status == "restricted":
            member.update({"is_member": True, "until_date": 0})
            member.update(
                {
                    f"can_{perm}": False
                    for perm in (
                        "send_messages",
                        "send_audios",
                        "send_documents",
                        "send_photos",
                        "send_videos",
                        "send_video_notes",
                        "send_voice_notes",
                        "send_polls",
                        "send_other_messages",
                        "add_web_page_previews",
                        "change_info",
                        "invite_users",
                        "pin_messages",
                        "manage_topics",
                    )
                }
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _get_chat_member(self, params: JSON) -> JSON:
        chat = self.chat(int(params.get("chat_id", 0)))
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise _ApiError(400, "Bad Request: user not found")
        return self._member(chat["id"], user_id)

    def _get_chat_administrators(self, params: JSON) -> list[JSON]:
        chat_id = self.chat(int(params.get("chat_id", 0)))["id"]
        if chat_id > 0:
            raise _ApiError(400, "Bad Request: there are no administrators in the private chat")
        ids = sorted(self._admins.get(chat_id, set()) | {self._creators.get(chat_id, 0)} - {0})
        return [self._member(chat_id, uid) for uid in ids]


class _Dropped(Exception):
    """Internal: the scripted action drops the connection."""


class _InProcessRequest(BaseRequest):
    """PTB's network seam wired straight into ``FakeTelegram._process``."""

    def __init__(self, fake: FakeTelegram, read_timeout: float | None) -> None:
        self._fake = fake
        self._read_timeout = read_timeout

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout, as HTTPXRequest's."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Dispatch to the fake; timeouts and drops raise what HTTPXRequest would."""
        prefix, _, raw_method = urlsplit(url).path.rpartition("/")
        token = prefix.rpartition("/")[2].removeprefix("bot")
        form = request_data.json_parameters if request_data is not None else {}
        if request_data is not None and request_data.multipart_data:
            raise NetworkError("FakeTelegram.request() does not support file uploads")

        async def load() -> JSON:
            return _normalize(form)

        timeout = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        try:
            async with asyncio.timeout(timeout):
                outcome = await self._fake._process(
                    token,
                    raw_method,
                    load,
                    content_type="application/x-www-form-urlencoded" if form else "",
                    http_method=method,
                )
        except TimeoutError:
            raise TimedOut from None
        if outcome is None:
            raise NetworkError("Server disconnected without sending a response (FakeTelegram)")
        status, body = outcome
        return status, json.dumps(body).encode()
