"""The one core handler for what users say: commands and questions in, posts out; platform-blind."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot import digest, qa, schedule
from bot.config import Settings
from bot.models import Answer, ChatRef, Digest, Inbound, Notice, Post, Preferences
from bot.store import Store, Subscription

log = logging.getLogger(__name__)

HELP = {
    "en": (
        "newsbot watches the news for war, terrorism, military tension and conflict diplomacy.\n"
        "/subscribe – receive alerts and digests here\n"
        "/unsubscribe – stop them\n"
        "/digest – the digest now\n"
        "/settings – this chat's settings; change one with e.g.\n"
        "   /settings digest 07:30 Europe/Berlin | digest every 6 | digest off\n"
        "   /settings alerts on|off | threshold 0.85 | quiet 22:00-07:00 | lang de\n"
        "   /settings countries Ukraine,Syria | include word,… | exclude word,…\n"
        "/sources – feeds being watched; /sources add URL, /sources remove ID (admins)\n"
        "/ask <question> – ask about the articles (or just type the question)\n"
        "/help – this text"
    ),
    "de": (
        "newsbot beobachtet Nachrichten zu Krieg, Terror, militärischen Spannungen und "
        "Konfliktdiplomatie.\n"
        "/subscribe – Meldungen und Überblicke hier erhalten\n"
        "/unsubscribe – abbestellen\n"
        "/digest – den Überblick jetzt\n"
        "/settings – Einstellungen dieses Chats; ändern z. B. mit\n"
        "   /settings digest 07:30 Europe/Berlin | digest every 6 | digest off\n"
        "   /settings alerts on|off | threshold 0.85 | quiet 22:00-07:00 | lang en\n"
        "   /settings countries Ukraine,Syrien | include Wort,… | exclude Wort,…\n"
        "/sources – beobachtete Feeds; /sources add URL, /sources remove ID (Admins)\n"
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
        "settings": "Subscribed: {subscribed}. Language: {lang}. Alerts: {alerts} (from score "
        "{alert:.2f}). Digest: {digest}. Quiet hours: {quiet}. Countries: {countries}. "
        "Include: {include}. Exclude: {exclude}.",
        "yes": "yes",
        "no": "no",
        "on": "on",
        "off": "off",
        "none": "none",
        "daily": "daily at {at} ({tz})",
        "every": "every {hours} h",
        "saved": "Saved. {summary}",
        "subscribe_first": "Subscribe first with /subscribe.",
        "bad_setting": "Can't use that: {error}. Send /help for examples.",
        "sources": "Feeds watched:\n{lines}",
        "no_sources": "No feeds are watched yet. Add one with /sources add URL.",
        "source_added": "Added feed {url}; it is polled every {minutes} minutes.",
        "source_known": "That feed is already watched.",
        "source_removed": "Removed feed {source}.",
        "source_unknown": "No watched feed {source}.",
        "source_refused": "Can't add that feed: {reason}",
        "source_quota": "This chat already added {n} feeds, the most allowed.",
        "why": "{title}\nScore {score:.2f} because of: {reasons}",
        "no_article": "No such article: {id}",
        "thanks": "Thanks — your feedback trains this deployment's classifier.",
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
        "settings": "Abonniert: {subscribed}. Sprache: {lang}. Meldungen: {alerts} (ab Wert "
        "{alert:.2f}). Überblick: {digest}. Ruhezeit: {quiet}. Länder: {countries}. "
        "Nur mit: {include}. Ohne: {exclude}.",
        "yes": "ja",
        "no": "nein",
        "on": "an",
        "off": "aus",
        "none": "keine",
        "daily": "täglich um {at} ({tz})",
        "every": "alle {hours} Std.",
        "saved": "Gespeichert. {summary}",
        "subscribe_first": "Bitte zuerst mit /subscribe abonnieren.",
        "bad_setting": "Das geht nicht: {error}. /help zeigt Beispiele.",
        "sources": "Beobachtete Feeds:\n{lines}",
        "no_sources": "Noch keine Feeds. Mit /sources add URL hinzufügen.",
        "source_added": "Feed {url} hinzugefügt; Abruf alle {minutes} Minuten.",
        "source_known": "Dieser Feed wird schon beobachtet.",
        "source_removed": "Feed {source} entfernt.",
        "source_unknown": "Kein beobachteter Feed {source}.",
        "source_refused": "Diesen Feed kann ich nicht hinzufügen: {reason}",
        "source_quota": "Dieser Chat hat schon {n} Feeds hinzugefügt, mehr geht nicht.",
        "why": "{title}\nWert {score:.2f} wegen: {reasons}",
        "no_article": "Diesen Artikel gibt es nicht: {id}",
        "thanks": "Danke — Ihre Rückmeldung trainiert den Klassifikator dieser Installation.",
    },
}
ADMIN_COMMANDS = {"/subscribe", "/unsubscribe", "/start"}
# Changing settings and feeds needs an admin; reading them does not.
ADMIN_WHEN_ARGUMENTS = {"/settings", "/sources"}
OnChange = Callable[[], Awaitable[None]]
UrlCheck = Callable[[str], Awaitable[None]]


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
        index: qa.Retrieval,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rate_clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
        check_url: UrlCheck | None = None,
    ) -> None:
        self.store, self.index, self.settings, self.clock = store, index, settings, clock
        self.questions = RateLimit(settings.chat.questions_per_minute, 60.0, rate_clock)
        # Commands that change schedules or feeds tell the service to rebuild its jobs.
        self.on_change = on_change
        self.check_url = check_url

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
        return [await self.ask_scoped(msg, text)]

    async def command(self, msg: Inbound, command: str, arg: str, lang: str) -> list[Post]:
        """Run one slash command."""
        replies = REPLIES[lang]
        needs_admin = command in ADMIN_COMMANDS or (command in ADMIN_WHEN_ARGUMENTS and arg)
        if needs_admin and not msg.is_admin:
            return [Notice(replies["admins_only"])]
        if command == "/help":
            return [Notice(HELP[lang])]
        if command in ("/start", "/subscribe"):
            created = await self.store.subscribe(msg.chat, lang, self.settings.digest.preferences())
            await self._changed()
            notice = Notice(replies["subscribed"] if created else replies["already"])
            return [Notice(HELP[lang]), notice] if command == "/start" else [notice]
        if command in ("/stop", "/unsubscribe"):
            removed = await self.store.unsubscribe(msg.chat)
            await self._changed()
            return [Notice(replies["unsubscribed"] if removed else replies["not_subscribed"])]
        if command == "/digest":
            return [await self.digest(msg.chat, lang)]
        if command == "/settings":
            return [await self.settings_command(msg.chat, arg, lang)]
        if command == "/sources":
            return [await self.sources_command(msg.chat, arg, lang)]
        if command == "/why":
            return [await self.why(arg, lang)]
        if command == "/feedback":
            return [await self.feedback(msg, arg, lang)]
        if command == "/ask":
            if not arg:
                return [Notice(replies["empty_question"])]
            return [await self.ask_scoped(msg, arg)]
        return [Notice(replies["unknown"].format(command=command))]

    def describe(self, subscription: Subscription | None, lang: str) -> str:
        """A chat's settings in words."""
        replies = REPLIES[lang]
        prefs = subscription.prefs if subscription else self.settings.digest.preferences()
        if prefs.digest_every_hours:
            digest_text = replies["every"].format(hours=prefs.digest_every_hours)
        elif prefs.digest_at:
            digest_text = replies["daily"].format(at=prefs.digest_at, tz=prefs.timezone)
        else:
            digest_text = replies["off"]
        quiet = (
            f"{prefs.quiet_start}–{prefs.quiet_end}"
            if prefs.quiet_start and prefs.quiet_end
            else replies["none"]
        )
        alert = prefs.alert_threshold
        if alert is None:
            alert = self.settings.classifier.alert_threshold
        return replies["settings"].format(
            subscribed=replies["yes"] if subscription and subscription.active else replies["no"],
            lang=subscription.lang if subscription else lang,
            alerts=replies["on"] if prefs.alerts else replies["off"],
            alert=alert,
            digest=digest_text,
            quiet=quiet,
            countries=", ".join(prefs.countries) or replies["none"],
            include=", ".join(prefs.include) or replies["none"],
            exclude=", ".join(prefs.exclude) or replies["none"],
        )

    async def settings_command(self, chat: ChatRef, arg: str, lang: str) -> Notice:
        """Show a chat's settings, or change one: `/settings <name> <value>`."""
        replies = REPLIES[lang]
        subscription = await self.store.subscription(chat)
        if not arg:
            return Notice(self.describe(subscription, lang))
        if subscription is None:
            return Notice(replies["subscribe_first"])
        name, _, value = arg.partition(" ")
        try:
            prefs, new_lang = change(subscription.prefs, name.lower(), value.strip())
        except ValueError as exc:
            return Notice(replies["bad_setting"].format(error=exc))
        await self.store.set_preferences(chat, prefs, new_lang)
        await self._changed()
        updated = await self.store.subscription(chat)
        lang = new_lang or lang
        return Notice(REPLIES[lang]["saved"].format(summary=self.describe(updated, lang)))

    async def sources_command(self, chat: ChatRef, arg: str, lang: str) -> Notice:
        """List feeds, or add/remove one: `/sources add URL [name]`, `/sources remove ID|URL`."""
        replies = REPLIES[lang]
        action, _, rest = arg.partition(" ")
        rest = rest.strip()
        if not action:
            feeds = await self.store.sources()
            if not feeds:
                return Notice(replies["no_sources"])
            lines = "\n".join(
                f"{f.id}. {f.name or f.url} — {f.url}"
                + (f" (error: {f.last_error})" if f.last_error else "")
                for f in feeds
            )
            return Notice(replies["sources"].format(lines=lines))
        if action.lower() == "add" and rest:
            url, _, name = rest.partition(" ")
            if self.check_url is not None:
                try:
                    await self.check_url(url)
                except ValueError as exc:
                    return Notice(replies["source_refused"].format(reason=exc))
            owner = f"{chat.platform}:{chat.chat_id}"
            mine = [f for f in await self.store.sources() if f.added_by == owner]
            quota = self.settings.sources.max_per_chat
            if len(mine) >= quota:
                return Notice(replies["source_quota"].format(n=quota))
            added = await self.store.add_source(url, name=name.strip(), added_by=owner)
            await self._changed()
            if not added:
                return Notice(replies["source_known"])
            return Notice(replies["source_added"].format(url=url, minutes=10))
        if action.lower() == "remove" and rest:
            key: int | str = int(rest) if rest.isdigit() else rest
            removed = await self.store.remove_source(key)
            await self._changed()
            template = replies["source_removed"] if removed else replies["source_unknown"]
            return Notice(template.format(source=rest))
        return Notice(replies["bad_setting"].format(error=f"/sources {arg}"))

    async def why(self, article_id: str, lang: str) -> Notice:
        """Why an article was flagged: its score and the cues that fired."""
        entries = await self.store.entries([article_id.strip()]) if article_id.strip() else []
        if not entries:
            return Notice(REPLIES[lang]["no_article"].format(id=article_id))
        article, verdict = entries[0]
        reasons = ", ".join(verdict.reasons) or REPLIES[lang]["none"]
        return Notice(
            REPLIES[lang]["why"].format(title=article.title, score=verdict.score, reasons=reasons)
        )

    async def feedback(self, msg: Inbound, arg: str, lang: str) -> Notice:
        """Record 👍/👎 on an alert: `/feedback <article id> up|down`."""
        article_id, _, vote = arg.strip().rpartition(" ")
        if vote not in ("up", "down") or not await self.store.get_article(article_id):
            return Notice(REPLIES[lang]["no_article"].format(id=arg))
        user = msg.user or msg.chat.chat_id
        await self.store.add_feedback(article_id, msg.chat, user, vote == "up")
        return Notice(REPLIES[lang]["thanks"])

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    async def ask_scoped(self, msg: Inbound, question: str) -> Post:
        """Answer a question; a reply to one of our alerts scopes it to that alert's article."""
        if msg.reply_to_article is None and msg.reply_to_message_id is not None:
            article = await self.store.article_for_message(msg.chat, msg.reply_to_message_id)
            if article is not None:
                msg = dataclasses.replace(msg, reply_to_article=article)
        return self.ask(msg, question)

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


def _words(value: str) -> tuple[str, ...]:
    if value.lower() in ("", "off", "none", "aus"):
        return ()
    return tuple(w.strip() for w in value.split(",") if w.strip())


def _on_off(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "an", "yes", "ja", "true", "1"):
        return True
    if lowered in ("off", "aus", "no", "nein", "false", "0"):
        return False
    raise ValueError(f"{value!r} is not on or off")


def change(prefs: Preferences, name: str, value: str) -> tuple[Preferences, str | None]:
    """Apply `/settings <name> <value>`; the new preferences and, for `lang`, the new language."""
    if name == "lang":
        if value not in REPLIES:
            raise ValueError(f"language {value!r} (choose {' or '.join(REPLIES)})")
        return prefs, value
    if name == "alerts":
        return dataclasses.replace(prefs, alerts=_on_off(value)), None
    if name == "threshold":
        try:
            threshold = float(value.replace(",", "."))
        except ValueError:
            raise ValueError(f"threshold {value!r} is not a number") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        return dataclasses.replace(prefs, alert_threshold=threshold), None
    if name in ("timezone", "tz"):
        schedule.zone(value)
        return dataclasses.replace(prefs, timezone=value), None
    if name == "digest":
        parts = value.split()
        if parts and parts[0].lower() in ("off", "aus"):
            return dataclasses.replace(prefs, digest_at=None, digest_every_hours=None), None
        if len(parts) == 2 and parts[0].lower() in ("every", "alle"):
            hours = int(parts[1].rstrip("h")) if parts[1].rstrip("h").isdigit() else 0
            if not 1 <= hours <= 168:
                raise ValueError("digest every N: N must be 1 to 168 hours")
            return dataclasses.replace(prefs, digest_every_hours=hours), None
        if parts:
            at = schedule.parse_hhmm(parts[0])
            tz = parts[1] if len(parts) > 1 else prefs.timezone
            schedule.zone(tz)
            return (
                dataclasses.replace(
                    prefs, digest_at=f"{at:%H:%M}", digest_every_hours=None, timezone=tz
                ),
                None,
            )
        raise ValueError("digest needs HH:MM [time zone], every N, or off")
    if name == "quiet":
        if value.lower() in ("off", "aus", "none"):
            return dataclasses.replace(prefs, quiet_start=None, quiet_end=None), None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError("quiet hours look like 22:00-07:00")
        first, last = schedule.parse_hhmm(start), schedule.parse_hhmm(end)
        return dataclasses.replace(
            prefs, quiet_start=f"{first:%H:%M}", quiet_end=f"{last:%H:%M}"
        ), None
    if name == "countries":
        return dataclasses.replace(prefs, countries=_words(value)), None
    if name == "include":
        return dataclasses.replace(prefs, include=_words(value)), None
    if name == "exclude":
        return dataclasses.replace(prefs, exclude=_words(value)), None
    raise ValueError(f"unknown setting {name!r}")
