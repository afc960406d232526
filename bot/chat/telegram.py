"""The Telegram chat: python-telegram-bot embedded in our loop; long polling or aiohttp webhook."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application, CallbackContext, TypeHandler
from telegram.request import BaseRequest

from bot.chat import DeliveryError, Handler, Pace, StartError, api_host
from bot.chat.render import cut, merge_notices, plain, telegram_html, text
from bot.chat.server import bound_port, listen
from bot.config import TelegramSettings
from bot.models import (
    Action,
    ActionKind,
    Alert,
    ChatRef,
    CommandInfo,
    Digest,
    Inbound,
    Limits,
    Notice,
    Post,
    Sent,
)

# PTB 22 warns (PTBDeprecationWarning) whenever RetryAfter.retry_after is read as an int; opting
# in to its future timedelta values silences that for good. setdefault: an explicit choice wins.
os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger(__name__)

PLATFORM = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only what we handle: Telegram then does not even queue the rest for us.
ALLOWED_UPDATES = ("message", "channel_post", "callback_query")
# Telegram unreachable at start: try again after 1, 2, 4 … seconds, at most a minute apart.
CONNECT_BACKOFF_SECONDS = (1.0, 60.0)
CALLBACK_DATA_BYTES = 64
ANSWER_CALLBACK_CHARS = 200
CONFLICT_REPEAT_SECONDS = 3600.0
CONFLICT_HELP = (
    "Telegram answered 409 Conflict to getUpdates: another newsbot instance or another "
    "program polls this bot token (or set a webhook for it). Only one poller receives "
    "updates, so this instance may miss messages. Stop the other one, give each deployment "
    'its own bot token, or use telegram.mode = "webhook". Retrying quietly.'
)

TelegramApp = Application[Any, Any, Any, Any, Any, Any]


class TelegramChat:
    """Telegram through python-telegram-bot: updates in (polling or webhook), posts out as HTML."""

    platform = PLATFORM
    # Telegram allows ~30 msg/s overall, 1 msg/s per chat, 20 msg/min per group; a little
    # headroom so jitter between us and Telegram (one request taking longer in transit than
    # the next) never tips a burst over.
    limits = Limits(per_second=29.5, chat_interval=1.05, group_per_minute=20, group_prefix="-")

    def __init__(
        self,
        token: str,
        settings: TelegramSettings,
        *,
        commands: Sequence[CommandInfo] = (),
        pace: Pace | None = None,
        request: BaseRequest | None = None,
        get_updates_request: BaseRequest | None = None,
        webhook_secret: str | None = None,
        poll_timeout: float = 30.0,
        admin_cache_seconds: float = 60.0,
        part_interval: float = 1.0,
        poll_when_leading: bool = False,
    ) -> None:
        self.settings = settings
        # Several instances on one database: only the elected leader polls (Telegram allows
        # one getUpdates per token); `lead()` starts and stops it. Webhooks need no leader.
        self.poll_when_leading = poll_when_leading
        # The core's table of commands: the menu, and which commands are ours in groups.
        self.commands = tuple(commands)
        # Replies wait for their slot on the same per-chat timeline as the Outbox's sends
        # (None: an adapter used on its own replies at once).
        self.pace = pace
        self.webhook_secret = webhook_secret or secrets.token_urlsafe(32)
        self.poll_timeout = poll_timeout
        self.admin_cache_seconds = admin_cache_seconds
        # Parts of one long post go to the same chat, which Telegram allows once a second (every
        # 3 s in groups: 20 a minute); the Outbox booked one slot for the whole post.
        self.part_interval = part_interval
        self._token = token
        self._request = request
        self._get_updates_request = get_updates_request
        self._app: TelegramApp | None = None
        self._handler: Handler | None = None
        self._runner: web.AppRunner | None = None
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}
        self._conflict_warned_at: float | None = None
        self._errors_seen: set[str] = set()
        self._bot_id = 0
        self._username = ""

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, handler: Handler) -> None:
        """Connect (retrying while Telegram is unreachable), register the command menu, and
        start polling or serving the webhook; raise StartError when the setup is wrong."""
        self._handler = handler
        webhook = self.settings.mode == "webhook"
        if webhook and not self.settings.webhook_url:
            raise StartError('telegram.webhook_url: required with telegram.mode = "webhook"')
        app = await self._connect(webhook)
        self._app = app
        self._bot_id, self._username = app.bot.id, app.bot.username or ""
        try:
            await self._register_commands()
            await app.start()
            if webhook:
                await self._start_webhook()
            elif not self.poll_when_leading:
                await self._start_polling(app)
        except TelegramError as exc:
            await self.stop()
            raise StartError(f"Telegram refused to start the bot: {exc.message}") from None
        except BaseException:
            await self.stop()
            raise
        log.info("telegram: @%s connected (%s)", self._username, self.settings.mode)

    async def _start_polling(self, app: TelegramApp) -> None:
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=timedelta(seconds=self.poll_timeout),
            allowed_updates=list(ALLOWED_UPDATES),
            error_callback=self._polling_error,
        )

    async def lead(self, leading: bool) -> None:
        """Poll while this instance leads; stop polling when another one does."""
        app = self._app
        if app is None or self.settings.mode == "webhook" or app.updater is None:
            return
        if leading and not app.updater.running:
            await self._start_polling(app)
            log.info("telegram: polling for updates (this instance leads)")
        elif not leading and app.updater.running:
            await app.updater.stop()
            log.info("telegram: stopped polling (another instance leads)")

    async def _connect(self, webhook: bool) -> TelegramApp:
        """An initialized Application; waits out network failures with back-off, one log line
        per attempt, until Telegram answers or the caller cancels."""
        delay, most = CONNECT_BACKOFF_SECONDS
        attempt = 0
        while True:
            attempt += 1
            app = self._build(webhook)
            connected = False
            try:
                await app.initialize()
                connected = True
                return app
            except InvalidToken:
                raise StartError(
                    "Telegram rejected the bot token: check TELEGRAM_BOT_TOKEN (from @BotFather)"
                ) from None
            except NetworkError as exc:  # includes TimedOut: Telegram or the network is down
                log.warning(
                    "telegram: cannot reach %s (attempt %d: %s); retrying in %.0f s",
                    api_host(self.settings.api_url),
                    attempt,
                    exc.message,
                    delay,
                )
            except TelegramError as exc:
                raise StartError(f"Telegram refused to start the bot: {exc.message}") from None
            finally:
                if not connected:
                    # A failed initialize() leaves the HTTP pools open; shutdown() skips them.
                    await app.bot.shutdown()
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)

    async def stop(self) -> None:
        """Stop receiving, let in-flight replies finish, and close connections."""
        app, self._app = self._app, None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()  # waits for updates being handled
        await app.shutdown()

    @property
    def webhook_port(self) -> int | None:
        """The port the webhook server listens on (None when not serving)."""
        return bound_port(self._runner)

    def _build(self, webhook: bool) -> TelegramApp:
        api_url = self.settings.api_url
        builder = (
            Application.builder()
            .token(self._token)
            .base_url(api_url)
            .base_file_url(_file_url(api_url))
            # Our scheduler and Outbox own timing and pacing: no JobQueue, no rate limiter.
            .job_queue(None)
        )
        if webhook:
            builder = builder.updater(None)
        if self._request is not None:
            builder = builder.request(self._request)
        if self._get_updates_request is not None:
            builder = builder.get_updates_request(self._get_updates_request)
        app: TelegramApp = builder.build()
        app.add_handler(TypeHandler(Update, self._on_update))
        app.add_error_handler(self._on_error)
        return app

    async def _register_commands(self) -> None:
        bot = self._bot()
        listed = [c for c in self.commands if c.listed]
        languages = dict.fromkeys(lang for c in listed for lang, _ in c.descriptions)
        for lang in languages:
            menu = [BotCommand(c.name, c.description(lang)) for c in listed]
            try:
                # English is the default menu; German users (language_code "de") get theirs.
                await bot.set_my_commands(menu, language_code=None if lang == "en" else lang)
            except TelegramError as exc:
                # The menu is a convenience; the bot works without it.
                log.warning("telegram: setMyCommands (%s) failed: %s", lang, exc.message)

    def _known(self, name: str) -> bool:
        """Whether `/name` is one of our commands (in groups, others belong to other bots)."""
        if not self.commands:
            return True  # no table given (an adapter used on its own): every command is ours
        bare = name.lstrip("/").lower()
        return any(bare == c.name or bare in c.aliases for c in self.commands)

    async def _start_webhook(self) -> None:
        path = urlsplit(self.settings.webhook_url).path or "/"
        server = web.Application(client_max_size=1 << 20)
        server.router.add_post(path, self._on_webhook)
        self._runner = await listen(
            server,
            self.settings.webhook_listen,
            self.settings.webhook_port,
            "telegram.webhook_listen/webhook_port",
        )
        bot = self._bot()
        # Telegram down or rate-limiting at start is waited out like the connection itself; a
        # refused URL (not HTTPS, bad port…) is a TelegramError and a StartError in start().
        delay, most = CONNECT_BACKOFF_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                await bot.set_webhook(
                    url=self.settings.webhook_url,
                    secret_token=self.webhook_secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
                return
            except RetryAfter as exc:
                wait, reason = retry_seconds(exc), "flood control"
            except NetworkError as exc:  # includes TimedOut and Telegram's 5xx answers
                wait, reason = delay, exc.message
                delay = min(delay * 2, most)
            log.warning(
                "telegram: setWebhook failed at %s (attempt %d: %s); retrying in %.0f s",
                api_host(self.settings.api_url),
                attempt,
                reason,
                wait,
            )
            await asyncio.sleep(wait)

    async def _on_webhook(self, request: web.Request) -> web.Response:
        # Whatever bytes the header holds (aiohttp keeps undecodable ones as surrogates), the
        # comparison is of bytes, in constant time: a forged header is a 403, never a 500.
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, self.webhook_secret.encode()):
            log.info("telegram webhook: request without the right secret token refused")
            return web.Response(status=403)
        app = self._app
        if app is None:
            return web.Response(status=503)
        try:
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("an update is a JSON object with an integer update_id")
            update = Update.de_json(data, app.bot)
        except Exception as exc:  # anything the body can do to the parser is the sender's fault
            log.info("telegram webhook: malformed update refused (%s)", type(exc).__name__)
            return web.Response(status=400)
        # Answer at once and handle in order, as with polling; Telegram retries slow answers.
        await app.update_queue.put(update)
        return web.Response(text="ok")

    def _polling_error(self, exc: TelegramError) -> None:
        # PTB retries getUpdates with back-off and calls this on every failure: say it once.
        if isinstance(exc, Conflict):
            now = time.monotonic()
            last = self._conflict_warned_at
            if last is None or now - last >= CONFLICT_REPEAT_SECONDS:
                self._conflict_warned_at = now
                log.warning(CONFLICT_HELP)
            else:
                log.debug("telegram polling: still in conflict")
            return
        name = type(exc).__name__
        level = logging.DEBUG if name in self._errors_seen else logging.WARNING
        self._errors_seen.add(name)
        log.log(level, "telegram polling failed (%s: %s); retrying", name, exc.message)

    async def _on_error(self, update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
        log.error("telegram: handling an update failed", exc_info=context.error)

    def _bot(self) -> Any:
        if self._app is None:
            raise DeliveryError("Telegram adapter is not started")
        return self._app.bot

    # --- outbound -----------------------------------------------------------------------

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        """Deliver one post as HTML parts (after the first `skip_parts`); raise DeliveryError."""
        if self._app is None:
            raise DeliveryError("Telegram adapter is not started", unavailable=True)
        parts = telegram_html(post)
        markup = self._buttons(post) if isinstance(post, Alert) else None
        target = _chat_id(chat.chat_id)
        thread = int(chat.thread_id) if chat.thread_id else None
        ids: list[str] = []
        try:
            for index, part in enumerate(parts):
                if index < skip_parts:
                    continue
                options: dict[str, Any] = {
                    "thread": thread,
                    "markup": markup if index == len(parts) - 1 else None,
                    "no_preview": isinstance(post, Digest | Notice),
                }
                if not ids:
                    message = await self._send_message(target, part, **options)
                else:
                    await asyncio.sleep(self._part_gap(chat.chat_id))
                    # Earlier parts are delivered: honour a flood wait here rather than make
                    # the ledger come back for the rest later.
                    message = await self._send_patiently(target, part, **options)
                ids.append(str(message.message_id))
        except TelegramError as exc:
            error = delivery_error(exc)
            # Say which parts did arrive, so the retry resumes after them instead of repeating.
            error.delivered_parts, error.message_ids = len(ids), tuple(ids)
            raise error from exc
        return Sent(tuple(ids))

    def _buttons(self, alert: Alert) -> InlineKeyboardMarkup | None:
        article_id = alert.item.article_id
        why, up, down = f"w:{article_id}", f"f:{article_id}:1", f"f:{article_id}:0"
        if len(up.encode()) > CALLBACK_DATA_BYTES:
            return None  # Telegram refuses longer callback data; the alert still goes out
        labels = [text(alert.lang, key) for key in ("button_why", "button_up", "button_down")]
        return InlineKeyboardMarkup(
            [
                [InlineKeyboardButton(labels[0], callback_data=why)],
                [
                    InlineKeyboardButton(labels[1], callback_data=up),
                    InlineKeyboardButton(labels[2], callback_data=down),
                ],
            ]
        )

    def _part_gap(self, chat_id: str) -> float:
        return self.part_interval * (3.0 if chat_id.startswith("-") else 1.0)

    async def _send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        thread: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
        no_preview: bool = False,
        reply_to: int | None = None,
    ) -> Message:
        message: Message = await self._bot().send_message(
            chat_id=chat_id,
            text=text,
            parse_mode=ParseMode.HTML,
            message_thread_id=thread,
            reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=True) if no_preview else None,
            reply_parameters=(
                ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
            ),
        )
        return message

    async def _send_patiently(self, chat_id: int | str, text: str, **options: Any) -> Message:
        """Send; on a flood wait, wait as told and try once more."""
        try:
            return await self._send_message(chat_id, text, **options)
        except RetryAfter as exc:
            await asyncio.sleep(retry_seconds(exc))
            return await self._send_message(chat_id, text, **options)

    async def _reply(
        self, chat_id: int, thread: int | None, reply_to: int | None, posts: Sequence[Post]
    ) -> None:
        """Answer a user directly (not through the Outbox): replies are few and expected now."""
        first = True
        for post in merge_notices(posts):
            parts = telegram_html(post)
            markup = self._buttons(post) if isinstance(post, Alert) else None
            for index, part in enumerate(parts):
                if self.pace is not None:
                    await self.pace(
                        ChatRef(PLATFORM, str(chat_id), str(thread) if thread else None)
                    )
                try:
                    await self._send_patiently(
                        chat_id,
                        part,
                        thread=thread,
                        markup=markup if index == len(parts) - 1 else None,
                        no_preview=isinstance(post, Digest | Notice),
                        reply_to=reply_to if first else None,
                    )
                except TelegramError as exc:
                    log.warning("telegram: reply failed (%s: %s)", type(exc).__name__, exc)
                    return
                first = False

    # --- inbound ------------------------------------------------------------------------

    async def _on_update(
        self, update: Update, context: CallbackContext[Any, Any, Any, Any]
    ) -> None:
        if update.callback_query is not None:
            await self._on_button(update.callback_query)
            return
        message = update.message or update.channel_post
        if message is None or not message.text:
            return
        inbound = await self.inbound(message)
        if inbound is None:
            return
        posts = await self._handle(inbound)
        thread = message.message_thread_id if message.is_topic_message else None
        await self._reply(message.chat.id, thread, message.message_id, posts)

    async def inbound(self, message: Message) -> Inbound | None:
        """The Inbound for a message, or None when the bot should stay silent."""
        chat = message.chat
        text = (message.text or "").strip()
        thread = message.message_thread_id if message.is_topic_message else None
        ref = ChatRef(PLATFORM, str(chat.id), str(thread) if thread else None)
        replied = message.reply_to_message
        reply_to = None
        # In forum topics every message "replies" to the topic's first message; that is no
        # reply to us.
        if (
            replied is not None
            and replied.from_user is not None
            and replied.from_user.id == self._bot_id
            and replied.message_id != message.message_thread_id
        ):
            reply_to = str(replied.message_id)
        private = chat.type == ChatType.PRIVATE
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            name, _, addressee = command.partition("@")
            if addressee and addressee.lower() != self._username.lower():
                return None  # /cmd@OtherBot
            if not private and not self._known(name):
                return None
        elif not private:
            if chat.type == ChatType.CHANNEL:
                return None  # the channel's own posts are not questions to us
            if not self._mentions_me(message) and reply_to is None:
                return None
            text = self._without_mention(text)
            if not text:
                return None
        user = message.from_user
        lang = user.language_code[:2].lower() if user and user.language_code else None
        is_admin = await self.is_admin(message) if text.startswith("/") else private
        return Inbound(
            ref,
            text,
            user=str(user.id) if user else None,
            lang=lang,
            is_admin=is_admin,
            reply_to_message_id=reply_to,
        )

    def _mentions_me(self, message: Message) -> bool:
        if self._username and re.search(
            rf"(?<!\w)@{re.escape(self._username)}\b", message.text or "", re.IGNORECASE
        ):
            return True
        return any(
            entity.type == MessageEntity.TEXT_MENTION
            and entity.user is not None
            and entity.user.id == self._bot_id
            for entity in message.entities
        )

    def _without_mention(self, text: str) -> str:
        if not self._username:
            return text
        stripped = re.sub(rf"(?<!\w)@{re.escape(self._username)}\b[,:]?", "", text, flags=re.I)
        return " ".join(stripped.split())

    async def is_admin(self, message: Message) -> bool:
        """Whether the sender may change this chat's subscription (cached briefly)."""
        chat = message.chat
        if chat.type in (ChatType.PRIVATE, ChatType.CHANNEL):
            return True  # only a channel's admins can post in it
        if message.sender_chat is not None:
            # Anonymous admins post as the group itself; a linked channel's posts are not admins.
            return message.sender_chat.id == chat.id
        user = message.from_user
        if user is None:
            return False
        key = (chat.id, user.id)
        now = time.monotonic()
        cached = self._admins.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            member = await self._bot().get_chat_member(chat.id, user.id)
        except TelegramError as exc:
            log.warning("telegram: admin check failed (%s); treating as member", exc.message)
            return False
        admin = member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
        if len(self._admins) > 10_000:
            self._admins = {k: v for k, v in self._admins.items() if v[0] > now}
        self._admins[key] = (now + self.admin_cache_seconds, admin)
        return admin

    async def _handle(self, inbound: Inbound) -> Sequence[Post]:
        assert self._handler is not None
        try:
            return await self._handler(inbound)
        except Exception:
            # One bad message must not go unanswered; the log has the details.
            log.exception("telegram: handling a message failed")
            return [Notice(text(inbound.lang or "en", "failed"))]

    async def _on_button(self, query: CallbackQuery) -> None:
        action = button_action(query.data or "")
        message = query.message
        if action is None or message is None:
            await _answer(query)
            return
        chat = message.chat
        topic = isinstance(message, Message) and message.is_topic_message
        thread = message.message_thread_id if topic and isinstance(message, Message) else None
        user = query.from_user
        inbound = Inbound(
            ChatRef(PLATFORM, str(chat.id), str(thread) if thread else None),
            "",
            user=str(user.id),
            lang=user.language_code[:2].lower() if user.language_code else None,
            is_admin=chat.type == ChatType.PRIVATE,
            reply_to_message_id=str(message.message_id),
            action=action,
        )
        posts = await self._handle(inbound)
        if action.kind is not ActionKind.WHY:
            # A vote needs no message in the chat: a short toast acknowledges it.
            note = plain(posts[0]) if posts else None
            await _answer(query, cut(note, ANSWER_CALLBACK_CHARS) if note else None)
            return
        await _answer(query)
        await self._reply(chat.id, thread, message.message_id, posts)


def button_action(data: str) -> Action | None:
    """The Action a button's callback data stands for (`w:ID`, `f:ID:1`, `f:ID:0`), or None."""
    kind, _, rest = data.partition(":")
    if kind == "w" and rest:
        return Action(ActionKind.WHY, rest)
    if kind == "f" and rest:
        article_id, _, vote = rest.rpartition(":")
        if article_id and vote in ("0", "1"):
            return Action(ActionKind.UP if vote == "1" else ActionKind.DOWN, article_id)
    return None


def delivery_error(exc: TelegramError) -> DeliveryError:
    """Translate a PTB error into what it means for the ledger."""
    if isinstance(exc, RetryAfter):
        seconds = retry_seconds(exc)
        return DeliveryError(
            f"Telegram flood control: retry after {seconds:g} s", retry_after=seconds
        )
    if isinstance(exc, ChatMigrated):
        return DeliveryError(
            "Telegram group was upgraded to a supergroup", migrated_to=str(exc.new_chat_id)
        )
    if isinstance(exc, Forbidden):
        # Blocked by the user, kicked from the group or channel: nobody there wants us.
        return DeliveryError(f"Telegram: {exc.message}", chat_gone=True)
    if isinstance(exc, BadRequest):
        lowered = exc.message.lower()
        gone = any(s in lowered for s in ("chat not found", "thread not found", "topic_deleted"))
        return DeliveryError(
            f"Telegram refused the message: {exc.message}", chat_gone=gone, permanent=True
        )
    if isinstance(exc, TimedOut):
        # The message may have arrived all the same; the ledger retries (at most one duplicate).
        return DeliveryError(f"Telegram timed out: {exc.message}")
    return DeliveryError(f"Telegram: {type(exc).__name__}: {exc.message}")


def retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds, whether PTB gives it as a timedelta or a number."""
    value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


async def _answer(query: CallbackQuery, text: str | None = None) -> None:
    try:
        await query.answer(text)
    except TelegramError as exc:
        # A query older than ~15 s can't be answered; the button press was still handled.
        log.debug("telegram: answerCallbackQuery failed: %s", exc.message)


def _chat_id(value: str) -> int | str:
    # Numeric ids as numbers; "@channelname" stays a name, as the Bot API accepts both.
    return int(value) if value.lstrip("-").isdigit() else value


def _file_url(api_url: str) -> str:
    base = api_url.rstrip("/")
    if base.endswith("/bot"):
        return base[: -len("/bot")] + "/file/bot"
    return base + "/file/bot"
