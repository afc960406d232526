"""The one core handler for what users say: commands and questions in, posts out; platform-blind."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from bot import digest, qa
from bot.config import Settings
from bot.models import Answer, ChatRef, Digest, Inbound, Notice, Post
from bot.store import Store

log = logging.getLogger(__name__)

HELP = {
    "en": (
        "newsbot watches the news for war, terrorism, military tension and conflict diplomacy.\n"
        "/subscribe – receive alerts and digests here\n"
        "/unsubscribe – stop them\n"
        "/digest – the digest now\n"
        "/settings – this chat's settings\n"
        "/ask <question> – ask about the articles (or just type the question)\n"
        "/help – this text"
    ),
    "de": (
        "newsbot beobachtet Nachrichten zu Krieg, Terror, militärischen Spannungen und "
        "Konfliktdiplomatie.\n"
        "/subscribe – Meldungen und Überblicke hier erhalten\n"
        "/unsubscribe – abbestellen\n"
        "/digest – den Überblick jetzt\n"
        "/settings – Einstellungen dieses Chats\n"
        "/ask <Frage> – eine Frage zu den Artikeln stellen (oder einfach die Frage schreiben)\n"
        "/help – dieser Text"
    ),
}
REPLIES = {
    "en": {
        "subscribed": "Subscribed: this chat will receive alerts and digests.",
        "already": "This chat is already subscribed.",
        "unsubscribed": "Unsubscribed: no more alerts or digests here.",
        "not_subscribed": "This chat is not subscribed.",
        "unknown": "Unknown command {command}. Send /help for the list.",
        "admins_only": "Only chat administrators can do that.",
        "empty_question": "Ask a question after /ask, e.g. /ask who attends from Germany?",
        "slow_down": "You're asking quickly — please wait {seconds} s before the next question.",
        "settings": "Subscribed: {subscribed}. Language: {lang}. Alerts from score {alert:.2f}, "
        "digest items from {digest:.2f}.",
        "yes": "yes",
        "no": "no",
    },
    "de": {
        "subscribed": "Abonniert: Dieser Chat erhält Meldungen und Überblicke.",
        "already": "Dieser Chat ist bereits abonniert.",
        "unsubscribed": "Abbestellt: Keine Meldungen oder Überblicke mehr.",
        "not_subscribed": "Dieser Chat ist nicht abonniert.",
        "unknown": "Unbekannter Befehl {command}. /help zeigt die Liste.",
        "admins_only": "Das dürfen nur Administratoren des Chats.",
        "empty_question": "Bitte eine Frage nach /ask stellen, z. B. /ask Wer vertritt die USA?",
        "slow_down": "Viele Fragen in kurzer Zeit — bitte {seconds} s warten.",
        "settings": "Abonniert: {subscribed}. Sprache: {lang}. Meldungen ab Wert {alert:.2f}, "
        "Überblick ab {digest:.2f}.",
        "yes": "ja",
        "no": "nein",
    },
}
ADMIN_COMMANDS = {"/subscribe", "/unsubscribe", "/start", "/sources"}


class RateLimit:
    """At most `limit` events per `window` seconds per key (sliding window)."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def wait_time(self, key: str) -> float:
        """Seconds until `key` may act again; 0 records the event and allows it."""
        now = self.clock()
        events = self._events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.window - now
        events.append(now)
        return 0.0


class Conversation:
    """Answers commands and questions for any chat platform."""

    def __init__(
        self,
        store: Store,
        index: qa.Index,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.index, self.settings, self.clock = store, index, settings, clock
        self.questions = RateLimit(settings.chat.questions_per_minute, 60.0, rate_clock)

    async def handle(self, msg: Inbound) -> list[Post]:
        """Reply to one inbound message."""
        text = msg.text.strip()
        if not text:
            return []
        lang = await self._lang(msg)
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            # Telegram appends the bot's name in groups: /digest@newsbot.
            command = command.split("@", 1)[0].lower()
            return await self.command(msg, command, rest.strip(), lang)
        return [self.ask(msg, text)]

    async def command(self, msg: Inbound, command: str, arg: str, lang: str) -> list[Post]:
        """Run one slash command."""
        replies = REPLIES[lang]
        if command in ADMIN_COMMANDS and not msg.is_admin:
            return [Notice(replies["admins_only"])]
        if command == "/help":
            return [Notice(HELP[lang])]
        if command in ("/start", "/subscribe"):
            created = await self.store.subscribe(msg.chat, lang)
            notice = Notice(replies["subscribed"] if created else replies["already"])
            return [Notice(HELP[lang]), notice] if command == "/start" else [notice]
        if command in ("/stop", "/unsubscribe"):
            removed = await self.store.unsubscribe(msg.chat)
            return [Notice(replies["unsubscribed"] if removed else replies["not_subscribed"])]
        if command == "/digest":
            return [await self.digest(msg.chat, lang)]
        if command == "/settings":
            subscription = await self.store.subscription(msg.chat)
            subscribed = subscription is not None and subscription.active
            thresholds = self.settings.classifier
            return [
                Notice(
                    replies["settings"].format(
                        subscribed=replies["yes"] if subscribed else replies["no"],
                        lang=lang,
                        alert=thresholds.alert_threshold,
                        digest=thresholds.digest_threshold,
                    )
                )
            ]
        if command == "/ask":
            if not arg:
                return [Notice(replies["empty_question"])]
            return [self.ask(msg, arg)]
        return [Notice(replies["unknown"].format(command=command))]

    def ask(self, msg: Inbound, question: str) -> Post:
        """Answer a question, scoped to the replied-to article when there is one."""
        key = f"{msg.chat.platform}:{msg.user or msg.chat.chat_id}"
        wait = self.questions.wait_time(key)
        if wait > 0:
            lang = msg.lang if msg.lang in REPLIES else self.settings.chat.default_language
            return Notice(REPLIES[lang]["slow_down"].format(seconds=max(1, round(wait))))
        answer: Answer = qa.answer(question, self.index, article_id=msg.reply_to_article)
        log.info(
            "question answered=%s confidence=%.2f sources=%s",
            answer.text is not None,
            answer.confidence,
            [s.id for s in answer.sources[:3]],
        )
        return answer

    async def digest(self, chat: ChatRef | None, lang: str) -> Digest:
        """The digest a chat would receive now: flagged items since its last digest."""
        since = None
        if chat is not None:
            subscription = await self.store.subscription(chat)
            since = subscription.last_digest_at if subscription else None
        entries = await self.store.flagged(self.settings.classifier.digest_threshold, since)
        return digest.build(
            ((article, verdict) for article, verdict, _seen in entries),
            now=self.clock(),
            since=since,
            max_items=self.settings.digest.max_items,
            lang=lang,
        )

    async def _lang(self, msg: Inbound) -> str:
        subscription = await self.store.subscription(msg.chat)
        if subscription is not None and subscription.lang in REPLIES:
            return subscription.lang
        if msg.lang in REPLIES:
            return str(msg.lang)
        return self.settings.chat.default_language
