"""Plain data that flows through newsbot: articles, verdicts, digests, answers, delivery states.

This module imports nothing of ours and does no I/O; every other module speaks in these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Article:
    """One news article as newsbot stores it."""

    id: str
    title: str
    text: str
    lang: str
    # ISO 8601, possibly partial ("2022-01", "2022-01-12", "2022-01-12T08:00:00+00:00"):
    # wire copy often gives only a month, and we keep what the source says.
    published: str | None = None
    place: str | None = None
    agency: str | None = None
    url: str | None = None
    source: str | None = None


class Level(StrEnum):
    """What newsbot does with a classified article."""

    ALERT = "alert"
    DIGEST = "digest"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score cut-offs: from `alert` an article alerts, from `digest` it goes into digests."""

    alert: float = 0.8
    digest: float = 0.5


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's judgement of one article."""

    article_id: str
    conflict: bool
    score: float
    reasons: tuple[str, ...] = ()
    level: Level = Level.IGNORE
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A citation: which article an answer or digest item comes from."""

    id: str
    title: str
    date: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to a question; `text is None` means the articles don't say."""

    question: str
    text: str | None
    lang: str = "en"
    sentence: str | None = None
    sources: tuple[SourceRef, ...] = ()
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where a post goes: a chat on one platform, optionally one topic/thread inside it."""

    platform: str
    chat_id: str
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One article as shown in an alert or a digest."""

    article_id: str
    title: str
    summary: str
    score: float
    reasons: tuple[str, ...] = ()
    topic: str = ""
    who: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    source: str | None = None
    url: str | None = None
    published: str | None = None
    also_reported_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    """Conflict-related items since a point in time, in display order, grouped by topic."""

    items: tuple[DigestItem, ...]
    generated_at: datetime
    since: datetime | None = None
    lang: str = "en"
    # A burst of alerts merged into one message, not a scheduled digest: headed as alerts.
    alerts: bool = False

    def groups(self) -> list[tuple[str, list[DigestItem]]]:
        """Items grouped by topic, keeping first-seen topic order."""
        grouped: dict[str, list[DigestItem]] = {}
        for item in self.items:
            grouped.setdefault(item.topic, []).append(item)
        return list(grouped.items())


@dataclass(frozen=True, slots=True)
class Alert:
    """An immediate notice about one article."""

    item: DigestItem
    lang: str = "en"


@dataclass(frozen=True, slots=True)
class Notice:
    """A plain text reply from the bot (help, confirmations, errors)."""

    text: str


Post = Alert | Digest | Answer | Notice


class ActionKind(StrEnum):
    """A button a user can press under an alert."""

    WHY = "why"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Action:
    """A button press: what was asked for, about which article."""

    kind: ActionKind
    article_id: str


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """A command as a chat platform lists it: its names and a one-line description per language."""

    name: str
    # (language, description) pairs, English first.
    descriptions: tuple[tuple[str, str], ...]
    aliases: tuple[str, ...] = ()
    # Listed in menus and help (False: understood but not advertised).
    listed: bool = True

    def description(self, lang: str) -> str:
        """The description in `lang`, else English."""
        texts = dict(self.descriptions)
        return texts.get(lang) or self.descriptions[0][1]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message a user sent to the bot: a command, a question or a button press."""

    chat: ChatRef
    text: str
    user: str | None = None
    # The article the message replies to (an alert or digest item), which scopes a question.
    reply_to_article: str | None = None
    lang: str | None = None
    is_admin: bool = True
    # The platform's id of the bot message this one replies to; the core maps it to an article.
    reply_to_message_id: str | None = None
    # A button press (then `text` is empty).
    action: Action | None = None
    # How this platform writes a command before its name ("/" on Telegram, "/newsbot " on Slack).
    command_prefix: str = "/"


@dataclass(frozen=True, slots=True)
class Limits:
    """A platform's message rate limits, declared by its adapter."""

    # Messages per second across all chats.
    per_second: float
    # Minimum seconds between two messages to the same chat.
    chat_interval: float = 0.0
    # Messages per minute to one group chat (None: no such limit).
    group_per_minute: int | None = None
    # Chat ids starting with this are groups (Telegram: negative ids).
    group_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """What a platform acknowledged for one post: its message ids, in order."""

    message_ids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Preferences:
    """A subscribed chat's choices: alerts, digest schedule, quiet hours, language, filters."""

    alerts: bool = True
    # None: the deployment's classifier.alert_threshold.
    alert_threshold: float | None = None
    # Daily digest at this local time ("HH:MM"), or every `digest_every_hours` hours when set.
    digest_at: str | None = "08:00"
    digest_every_hours: int | None = None
    timezone: str = "UTC"
    # Alerts inside quiet hours ("HH:MM", local time) wait until the quiet hours end.
    quiet_start: str | None = None
    quiet_end: str | None = None
    countries: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class DeliveryKind(StrEnum):
    """What a ledger row owes (stored as its value)."""

    ALERT = "alert"
    DIGEST = "digest"
    NOTICE = "notice"


class DeliveryStatus(StrEnum):
    """Where a ledger row stands (stored as its value)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # The chat unsubscribed (or moved onto an id that was owed the same) before it went out.
    CANCELLED = "cancelled"


# States that need no more sending.
FINISHED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)
# States of rows still owed.
OWED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
