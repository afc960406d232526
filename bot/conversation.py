"""The one core handler for commands, questions and button presses; platform-blind."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from bot import digest, messages, qa, regions, schedule
from bot.catalog import Catalog
from bot.commands import COMMANDS, find
from bot.config import Settings
from bot.fetch import canonical_url
from bot.ledger import Ledger
from bot.models import (
    ActionKind,
    Answer,
    ChatRef,
    Digest,
    Inbound,
    Notice,
    Post,
    Preferences,
)
from bot.question import evident_lang
from bot.sources import FeedSource, Sources, owner_of
from bot.subscriptions import Subscription, Subscriptions

log = logging.getLogger(__name__)

UrlCheck = Callable[[str], Awaitable[None]]
# Minutes between polls of a feed added in chat (the store's default interval).
CHAT_FEED_MINUTES = 10


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """What a command changed, so the service re-syncs just that: one chat or one feed."""

    chat: ChatRef | None = None
    source_id: int | None = None


OnChange = Callable[[Change], Awaitable[None]]
CommandHandler = Callable[[Inbound, str, str], Awaitable[list[Post]]]


# The console is the operator at the machine, not a chat member: no rate limits there.
UNLIMITED_PLATFORMS = frozenset({"console"})


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
        if len(self._events) > 50_000:
            # Forget keys that have been quiet for a whole window: memory stays bounded.
            self._events = defaultdict(
                deque, {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}
            )
        return 0.0


def shown_url(url: str) -> str:
    """A feed URL fit to show in a chat: no credentials, query string or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if ":" in host:
        host = f"[{host}]"
    shown = urlunsplit((parts.scheme, host + port, parts.path, "", ""))
    # The query may hold a key; its mark still tells `…/feed` and `…/feed?x=1` apart.
    return shown + "?…" if parts.query else shown


def _answer_in(
    lang: str,
    question: str,
    index: qa.Retrieval,
    article_id: str | None,
    hidden: frozenset[str],
    shown: frozenset[str] = frozenset(),
) -> Answer:
    """The answer, speaking the question's language if it shows one of ours, else `lang`."""
    answer = qa.answer(question, index, article_id, hidden, shown)
    if answer.lang != lang and evident_lang(question) is None:
        # A Russian question in an English chat got a German "I don't know".
        answer = dataclasses.replace(answer, lang=lang)
    return answer


class Conversation:
    """Answers commands, questions and button presses for any chat platform."""

    def __init__(
        self,
        sources: Sources,
        catalog: Catalog,
        subscriptions: Subscriptions,
        ledger: Ledger,
        index: qa.Retrieval,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rate_clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
        check_url: UrlCheck | None = None,
    ) -> None:
        self.sources, self.catalog = sources, catalog
        self.subscriptions, self.ledger = subscriptions, ledger
        self.index, self.settings, self.clock = index, settings, clock
        chat = settings.chat
        self.questions = RateLimit(chat.questions_per_minute, 60.0, rate_clock)
        self.user_commands = RateLimit(chat.commands_per_minute, 60.0, rate_clock)
        self.chat_commands = RateLimit(chat.chat_commands_per_minute, 60.0, rate_clock)
        # Commands that change schedules or feeds tell the service what to re-sync.
        self.on_change = on_change
        self.check_url = check_url
        # Every command in the table must have its handler here: fail at start, not on use.
        self.handlers: dict[str, CommandHandler] = {
            command.name: getattr(self, command.handler) for command in COMMANDS
        }

    async def handle(self, msg: Inbound) -> list[Post]:
        """Reply to one inbound message or button press."""
        text = msg.text.strip()
        if not text and msg.action is None:
            return []
        lang = await self._lang(msg)
        if msg.action is not None or text.startswith("/"):
            wait = self._command_wait(msg)
            if wait > 0:
                return [self._notice(msg, lang, "slow_down_commands", seconds=max(1, round(wait)))]
        if msg.action is not None:
            return [await self.act(msg, lang)]
        if text.startswith("/"):
            name, _, rest = text[1:].partition(" ")
            # Telegram appends the bot's name in groups: /digest@newsbot.
            name = name.split("@", 1)[0].lower()
            return await self.command(msg, name, rest.strip(), lang)
        return [await self.ask_scoped(msg, text, lang)]

    async def command(self, msg: Inbound, name: str, arg: str, lang: str) -> list[Post]:
        """Run one command from the table, if the user may."""
        command = find(name)
        if command is None:
            return [self._notice(msg, lang, "unknown", command=f"{msg.command_prefix}{name}")]
        if not command.allowed(msg.is_admin, arg):
            return [self._notice(msg, lang, "admins_only")]
        return await self.handlers[command.name](msg, arg, lang)

    def _command_wait(self, msg: Inbound) -> float:
        if msg.chat.platform in UNLIMITED_PLATFORMS:
            return 0.0
        chat = f"{msg.chat.platform}:{msg.chat.chat_id}"
        user_wait = self.user_commands.wait_time(f"{chat}:{msg.user or ''}")
        if user_wait > 0:
            return user_wait
        return self.chat_commands.wait_time(chat)

    def _notice(self, msg: Inbound, lang: str, key: str, **fields: object) -> Notice:
        return Notice(messages.text(lang, key, p=msg.command_prefix, **fields))

    # --- the commands (named in bot/commands.py) --------------------------------------------

    def help_text(self, lang: str, prefix: str = "/") -> str:
        """/help, generated from the table of commands."""
        lines = [messages.text(lang, "help_intro")]
        for command in COMMANDS:
            if command.listed:
                argument = f" {messages.text(lang, command.argument)}" if command.argument else ""
                lines.append(f"{prefix}{command.name}{argument} – {command.help(lang)}")
                if command.usage:
                    lines.append(messages.text(lang, command.usage, p=prefix))
        lines.append(messages.text(lang, "help_question"))
        return "\n".join(lines)

    async def help(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """What the bot does and how to use it."""
        return [Notice(self.help_text(lang, msg.command_prefix))]

    async def start(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """Welcome, and subscribe."""
        return [*(await self.help(msg, arg, lang)), *(await self.subscribe(msg, arg, lang))]

    async def subscribe(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """Subscribe this chat."""
        created = await self.subscriptions.subscribe(
            msg.chat, lang, self.settings.digest.preferences()
        )
        await self._changed(Change(chat=msg.chat))
        return [self._notice(msg, lang, "subscribed" if created else "already")]

    async def unsubscribe(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """Unsubscribe this chat."""
        removed = await self.subscriptions.unsubscribe(msg.chat)
        await self._changed(Change(chat=msg.chat))
        return [self._notice(msg, lang, "unsubscribed" if removed else "not_subscribed")]

    async def digest_command(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """The digest now."""
        return [await self.digest(msg.chat, lang)]

    async def ask_command(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """Answer the question after /ask."""
        if not arg:
            return [self._notice(msg, lang, "empty_question")]
        return [await self.ask_scoped(msg, arg, lang)]

    def describe(self, subscription: Subscription | None, lang: str) -> str:
        """A chat's settings in words."""

        def say(key: str, **fields: object) -> str:
            return messages.text(lang, key, **fields)

        prefs = subscription.prefs if subscription else self.settings.digest.preferences()
        if prefs.digest_every_hours:
            digest_text = say("every", hours=prefs.digest_every_hours)
        elif prefs.digest_at:
            digest_text = say("daily", at=prefs.digest_at, tz=prefs.timezone)
        else:
            digest_text = say("off")
        quiet = (
            f"{prefs.quiet_start}–{prefs.quiet_end}"
            if prefs.quiet_start and prefs.quiet_end
            else say("none")
        )
        alert = prefs.alert_threshold
        if alert is None:
            alert = self.settings.classifier.alert_threshold
        return say(
            "settings",
            subscribed=say("yes") if subscription and subscription.active else say("no"),
            lang=subscription.lang if subscription else lang,
            alerts=say("on") if prefs.alerts else say("off"),
            alert=alert,
            digest=digest_text,
            quiet=quiet,
            countries=", ".join(regions.label(c, lang) for c in prefs.countries) or say("none"),
            include=", ".join(prefs.include) or say("none"),
            exclude=", ".join(prefs.exclude) or say("none"),
        )

    async def settings_command(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """Show a chat's settings, or change one: `/settings <name> <value>`."""
        chat = msg.chat
        subscription = await self.subscriptions.subscription(chat)
        if not arg:
            return [Notice(self.describe(subscription, lang))]
        if subscription is None:
            return [self._notice(msg, lang, "subscribe_first")]
        name, _, value = arg.partition(" ")
        try:
            prefs, new_lang = change(subscription.prefs, name.lower(), value.strip())
        except SettingError as exc:
            return [self._notice(msg, lang, "bad_setting", error=exc.text(lang))]
        await self.subscriptions.set_preferences(chat, prefs, new_lang)
        await self._changed(Change(chat=chat))
        updated = await self.subscriptions.subscription(chat)
        lang = new_lang or lang
        return [self._notice(msg, lang, "saved", summary=self.describe(updated, lang))]

    async def sources_command(self, msg: Inbound, arg: str, lang: str) -> list[Post]:
        """This chat's feeds, or add/remove one: `/sources add URL [name]`, `/sources remove ID`.

        A chat sees and changes only the feeds it owns (several chats may own one feed: each
        adds and removes only its own share); feeds from the config file are visible to no
        chat (their URLs may carry credentials) and change only in the config.
        """
        action, _, rest = arg.partition(" ")
        rest = rest.strip()
        owner = owner_of(msg.chat)
        mine = await self.sources.owned_by(owner)
        if not action or (action.lower() in ("list", "liste") and not rest):
            if not mine:
                return [self._notice(msg, lang, "no_sources")]
            lines = "\n".join(self._feed_line(f, lang) for f in mine)
            return [self._notice(msg, lang, "sources_list", lines=lines)]
        if action.lower() == "add" and rest:
            url, _, name = rest.partition(" ")
            if any(f.url == canonical_url(url) for f in mine):
                return [self._notice(msg, lang, "source_known")]
            quota = self.settings.sources.max_per_chat
            if len(mine) >= quota:
                return [self._notice(msg, lang, "source_quota", n=quota)]
            if self.check_url is not None:
                try:
                    await self.check_url(url)
                except ValueError as exc:
                    return [self._notice(msg, lang, "source_refused", reason=exc)]
            added = await self.sources.add(url, name=name.strip(), added_by=owner)
            if not added:
                return [self._notice(msg, lang, "source_known")]
            feed = await self.sources.find(url)
            if feed is not None:
                await self._changed(Change(source_id=feed.id))
            return [
                self._notice(
                    msg, lang, "source_added", url=shown_url(url), minutes=CHAT_FEED_MINUTES
                )
            ]
        if action.lower() == "remove" and rest:
            found = [f for f in mine if str(f.id) == rest or f.url == canonical_url(rest)]
            for feed in found:
                # Only this chat's share: the feed stays polled for its other owners.
                await self.sources.remove(feed.id, owner=owner)
                await self._changed(Change(source_id=feed.id))
            key = "source_removed" if found else "source_unknown"
            return [self._notice(msg, lang, key, source=shown_url(rest))]
        return [self._notice(msg, lang, "bad_setting", error=f"sources {arg}")]

    def _feed_line(self, feed: FeedSource, lang: str) -> str:
        url = shown_url(feed.url)
        line = f"{feed.id}. {feed.name} — {url}" if feed.name else f"{feed.id}. {url}"
        if feed.state.last_error:
            line += f" ({messages.text(lang, 'source_error')}: {feed.state.last_error[:200]})"
        return line

    # --- buttons --------------------------------------------------------------------------

    async def act(self, msg: Inbound, lang: str) -> Post:
        """A button under an alert: explain it, or record 👍/👎 as classifier feedback."""
        assert msg.action is not None
        article_id = msg.action.article_id
        if msg.action.kind is ActionKind.WHY:
            return await self.why(article_id, lang)
        if not await self.catalog.get_article(article_id):
            return Notice(messages.text(lang, "no_article", id=article_id))
        user = msg.user or msg.chat.chat_id
        up = msg.action.kind is ActionKind.UP
        await self.catalog.add_feedback(article_id, msg.chat, user, up)
        return Notice(messages.text(lang, "thanks"))

    async def why(self, article_id: str, lang: str) -> Notice:
        """Why an article was flagged: its score and the cues that fired."""
        entries = await self.catalog.entries([article_id.strip()]) if article_id.strip() else []
        if not entries:
            return Notice(messages.text(lang, "no_article", id=article_id))
        article, verdict = entries[0]
        reasons = ", ".join(verdict.reasons) or messages.text(lang, "none")
        return Notice(
            messages.text(
                lang, "why_flagged", title=article.title, score=verdict.score, reasons=reasons
            )
        )

    async def _changed(self, what: Change) -> None:
        if self.on_change is not None:
            await self.on_change(what)

    # --- questions ------------------------------------------------------------------------

    async def ask_scoped(self, msg: Inbound, question: str, lang: str | None = None) -> Post:
        """Answer a question; a reply to one of our alerts scopes it to that alert's article."""
        if msg.reply_to_article is None and msg.reply_to_message_id is not None:
            article = await self.ledger.article_for_message(msg.chat, msg.reply_to_message_id)
            if article is not None:
                msg = dataclasses.replace(msg, reply_to_article=article)
        return await self.ask(msg, question, lang)

    async def ask(self, msg: Inbound, question: str, lang: str | None = None) -> Post:
        """Answer a question (in a worker thread), scoped to the replied-to article if any."""
        lang = lang or (msg.lang if msg.lang in messages.LANGUAGES else None)
        lang = lang or self.settings.chat.default_language
        limit = self.settings.chat.max_question_chars
        if len(question) > limit:
            return self._notice(msg, lang, "question_too_long", n=len(question), limit=limit)
        key = f"{msg.chat.platform}:{msg.user or msg.chat.chat_id}"
        wait = 0.0 if msg.chat.platform in UNLIMITED_PLATFORMS else self.questions.wait_time(key)
        if wait > 0:
            return self._notice(msg, lang, "slow_down", seconds=max(1, round(wait)))
        # Other chats' own feeds are theirs: never cited here (one lookup per question).
        hidden = await self.sources.hidden_from(owner_of(msg.chat))
        # ...unless a public source (or one of this chat's own) carried the same text too.
        shown = await self.catalog.shown_despite_source(owner_of(msg.chat)) if hidden else None
        # Answering takes up to a few seconds of CPU: never on the event loop.
        answer: Answer = await asyncio.to_thread(
            _answer_in,
            lang,
            question,
            self.index,
            msg.reply_to_article,
            hidden,
            shown or frozenset(),
        )
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
        prefs = None
        # Another chat's own feeds are its business; no chat at all sees only the public ones.
        viewer = owner_of(chat) if chat is not None else ""
        if chat is not None:
            subscription = await self.subscriptions.subscription(chat)
            since = subscription.last_digest_at if subscription else None
            prefs = subscription.prefs if subscription else None
        entries = await self.catalog.flagged(
            self.settings.classifier.digest_threshold, since, visible_to=viewer
        )
        return await asyncio.to_thread(
            digest.build,
            # The chat's own filters, as in its scheduled digest.
            [
                (article, verdict)
                for article, verdict, _seen in entries
                if prefs is None or digest.wants(prefs, article, verdict)
            ],
            now=self.clock(),
            since=since,
            max_items=self.settings.digest.max_items,
            lang=lang,
        )

    async def _lang(self, msg: Inbound) -> str:
        subscription = await self.subscriptions.subscription(msg.chat)
        if subscription is not None and subscription.lang in messages.LANGUAGES:
            return subscription.lang
        if msg.lang in messages.LANGUAGES:
            return str(msg.lang)
        return self.settings.chat.default_language


class SettingError(ValueError):
    """A `/settings` value that can't be used: a catalogue key and its fields, shown in the chat's
    language."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(messages.text("en", key, **fields))
        self.key, self.fields = key, fields

    def text(self, lang: str) -> str:
        """The reason in `lang`."""
        return messages.text(lang, self.key, **self.fields)


# A filter is a short list of words: long enough for any newsroom, short enough that the
# settings reply fits one chat message.
MAX_FILTER_WORDS = 30
MAX_FILTER_WORD_CHARS = 40


def _resolved(names: tuple[str, ...]) -> tuple[str, ...]:
    """Country names as their English labels (one filter whatever language the chat typed)."""
    return tuple(dict.fromkeys(regions.resolve(n) or n for n in names))


def _words(value: str) -> tuple[str, ...]:
    if value.lower() in ("", "off", "none", "aus"):
        return ()
    words = tuple(dict.fromkeys(w.strip() for w in value.split(",") if w.strip()))
    if len(words) > MAX_FILTER_WORDS or any(len(w) > MAX_FILTER_WORD_CHARS for w in words):
        raise SettingError("bad_words", n=MAX_FILTER_WORDS, chars=MAX_FILTER_WORD_CHARS)
    return words


def _on_off(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "an", "yes", "ja", "true", "1"):
        return True
    if lowered in ("off", "aus", "no", "nein", "false", "0"):
        return False
    raise SettingError("bad_on_off", value=value)


def _zone(name: str) -> str:
    try:
        schedule.zone(name)
    except ValueError:
        raise SettingError("bad_zone", value=name) from None
    return name


def _hhmm(value: str) -> str:
    try:
        return f"{schedule.parse_hhmm(value):%H:%M}"
    except ValueError:
        raise SettingError("bad_time", value=value.strip()) from None


def change(prefs: Preferences, name: str, value: str) -> tuple[Preferences, str | None]:
    """Apply `/settings <name> <value>`; the new preferences and, for `lang`, the new language.

    Raises SettingError saying what is wrong with the value.
    """
    if name == "lang":
        if value not in messages.LANGUAGES:
            choices = " / ".join(messages.LANGUAGES)
            raise SettingError("bad_language", value=value, choices=choices)
        return prefs, value
    if name == "alerts":
        return dataclasses.replace(prefs, alerts=_on_off(value)), None
    if name == "threshold":
        try:
            threshold = float(value.replace(",", "."))
        except ValueError:
            raise SettingError("bad_number", value=value) from None
        if not 0.0 <= threshold <= 1.0:  # NaN fails this too
            raise SettingError("bad_threshold")
        # + 0.0 turns "-0" into 0.0, which is shown as 0.00, not -0.00.
        return dataclasses.replace(prefs, alert_threshold=round(threshold, 4) + 0.0), None
    if name in ("timezone", "tz"):
        return dataclasses.replace(prefs, timezone=_zone(value)), None
    if name == "digest":
        parts = value.split()
        if parts and parts[0].lower() in ("off", "aus"):
            return dataclasses.replace(prefs, digest_at=None, digest_every_hours=None), None
        if len(parts) == 2 and parts[0].lower() in ("every", "alle"):
            hours = int(parts[1].rstrip("h")) if parts[1].rstrip("h").isdigit() else 0
            if not 1 <= hours <= 168:
                raise SettingError("bad_every")
            return dataclasses.replace(prefs, digest_every_hours=hours), None
        if parts:
            at = _hhmm(parts[0])
            tz = _zone(parts[1]) if len(parts) > 1 else prefs.timezone
            return (
                dataclasses.replace(prefs, digest_at=at, digest_every_hours=None, timezone=tz),
                None,
            )
        raise SettingError("bad_digest")
    if name == "quiet":
        if value.lower() in ("off", "aus", "none"):
            return dataclasses.replace(prefs, quiet_start=None, quiet_end=None), None
        start, sep, end = value.partition("-")
        if not sep:
            raise SettingError("bad_quiet")
        begin, until = _hhmm(start), _hhmm(end)
        if begin == until:
            # Equal ends would be quiet all day: every alert held for 24 hours, silently.
            raise SettingError("quiet_equal", value=begin)
        return dataclasses.replace(prefs, quiet_start=begin, quiet_end=until), None
    if name == "countries":
        wanted = _words(value)
        unknown = [w for w in wanted if regions.resolve(w) is None]
        if unknown:
            # A typo would silently stop every alert: refuse it, naming what was not understood.
            raise SettingError("unknown_country", value=", ".join(unknown))
        return dataclasses.replace(prefs, countries=_resolved(wanted)), None
    if name == "include":
        return dataclasses.replace(prefs, include=_words(value)), None
    if name == "exclude":
        return dataclasses.replace(prefs, exclude=_words(value)), None
    raise SettingError("unknown_setting", value=name)
