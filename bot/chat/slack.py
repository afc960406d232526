"""The Slack chat: slack-bolt's AsyncApp embedded in our loop; HTTP (Events API) or Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock as SignatureClock
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.chat import DeliveryError, Handler, Pace, StartError, api_host
from bot.chat.render import SLACK_ACTIONS, SlackMessage, merge_notices, slack_blocks, text
from bot.chat.server import bound_port, listen
from bot.config import SlackSettings
from bot.models import (
    Action,
    ActionKind,
    ChatRef,
    CommandInfo,
    Inbound,
    Limits,
    Notice,
    Post,
    Sent,
)

log = logging.getLogger(__name__)


class _GivenClientNote(logging.Filter):
    """Drops bolt's start-up warning that the token it read from SLACK_BOT_TOKEN is unused."""

    def filter(self, record: logging.LogRecord) -> bool:
        # We hand bolt our own client on purpose (one session, our base URL); bolt still reads
        # SLACK_BOT_TOKEN from the environment and warns at every start that it is unused.
        return "`token` will be unused" not in record.getMessage()


bolt_log = log.getChild("bolt")
bolt_log.addFilter(_GivenClientNote())

PLATFORM = "slack"
PATH = "/slack/events"
SLASH_COMMAND = "/newsbot"
PREFIX = SLASH_COMMAND + " "
# Slack's request signatures are valid for five minutes; older ones are replays.
MAX_REQUEST_AGE = 300
# Errors that mean the bot token itself is wrong: a configuration problem, not a failure.
TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# The channel is gone for us (deleted, archived, bot removed): stop sending there.
GONE_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "team_access_not_granted",
        "user_not_found",
        "cannot_dm_bot",
    }
)
# The message itself is refused: sending it again cannot help.
MALFORMED_ERRORS = frozenset(
    {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "invalid_arguments"}
)
ACTION_KINDS = {
    SLACK_ACTIONS["why"]: ActionKind.WHY,
    SLACK_ACTIONS["up"]: ActionKind.UP,
    SLACK_ACTIONS["down"]: ActionKind.DOWN,
}
SEEN_EVENTS = 10_000
# Back-off while Slack cannot be reached at start: first wait, longest wait (seconds).
CONNECT_BACKOFF_SECONDS = (1.0, 60.0)
# What slack-bolt's middleware reads from a body without checking its type.
BODY_SHAPES: dict[str, type] = {
    "event": dict,
    "user": dict,
    "channel": dict,
    "team": dict,
    "container": dict,
    "message": dict,
    "authorizations": list,
    "actions": list,
}
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")

Ack = Callable[..., Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def verify_request(
    secret: str, body: bytes, headers: Mapping[str, str], now: float
) -> Literal["ok", "stale", "bad"]:
    """Check Slack's v0 request signature; never raises, whatever the headers hold."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    # slack_sdk's verifier calls int() on the timestamp (ValueError on "abc", and a 5,000-digit
    # one exceeds Python's int-parsing limit) and compares non-ASCII signatures with a
    # TypeError: only well-formed headers reach it.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "bad"
    if not (signature.isascii() and signature.startswith("v0=") and len(signature) <= 100):
        return "bad"
    if abs(now - int(timestamp)) > MAX_REQUEST_AGE:
        return "stale"
    try:
        verifier = SignatureVerifier(secret, clock=_FixedClock(now))
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError, UnicodeDecodeError):
        return "bad"
    return "ok" if valid else "bad"


def well_formed(body: str, content_type: str | None) -> bool:
    """Whether a verified body has the shape slack-bolt assumes (it raises on others)."""
    if not body:
        return True
    try:
        # As slack-bolt reads bodies: JSON, a form with a JSON `payload`, or a plain form.
        if content_type == "application/json" or body.startswith("{"):
            data: object = json.loads(body)
        else:
            form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            if "payload" not in form:
                return True
            data = json.loads(form["payload"])
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    for key, shape in BODY_SHAPES.items():
        value = data.get(key)
        if value is not None and not isinstance(value, shape):
            return False
    return all(
        isinstance(entry, dict)
        for key in ("authorizations", "actions")
        for entry in data.get(key) or []
    )


class _FixedClock(SignatureClock):
    """slack_sdk's verifier asks a clock for now; ours is injectable for tests."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


class SlackChat:
    """Slack through slack-bolt: events, /newsbot and buttons in; Block Kit posts out."""

    platform = PLATFORM
    # Slack allows about one message per second per channel (short bursts tolerated) and
    # rate-limits chat.postMessage per workspace well above what one deployment sends.
    limits = Limits(per_second=20.0, chat_interval=1.05)

    def __init__(
        self,
        token: str,
        settings: SlackSettings,
        *,
        signing_secret: str | None = None,
        app_token: str | None = None,
        commands: Sequence[CommandInfo] = (),
        pace: Pace | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        admin_cache_seconds: float = 60.0,
    ) -> None:
        self.settings = settings
        self.commands = tuple(commands)
        # Replies wait for their slot on the Outbox's per-channel timeline (None: our own).
        self.pace = pace
        self.clock, self.sleep = clock, sleep
        self.admin_cache_seconds = admin_cache_seconds
        self._token = token
        self._signing_secret = signing_secret
        self._app_token = app_token
        self._handler: Handler | None = None
        self._client: AsyncWebClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._app: AsyncApp | None = None
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        self._seen_signatures: dict[str, float] = {}
        self._admins: dict[str, tuple[float, bool]] = {}
        self._next_send: dict[str, float] = {}
        self.bot_user_id = ""
        self.mode = ""
        # Forged, stale or malformed HTTP requests refused (for the log and tests).
        self.refused = 0

    # --- lifecycle ----------------------------------------------------------------------

    def _choose_mode(self) -> str:
        mode = self.settings.mode
        if mode == "auto":
            mode = "socket" if self._app_token else "http"
        if mode == "socket" and not self._app_token:
            raise StartError("slack.mode = 'socket' needs SLACK_APP_TOKEN (xapp-…)")
        if mode == "http" and not self._signing_secret:
            raise StartError(
                "Slack needs SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)"
            )
        return mode

    async def start(self, handler: Handler) -> None:
        """Check the token (auth.test), then serve /slack/events or connect Socket Mode."""
        self._handler = handler
        self.mode = self._choose_mode()
        self._session = aiohttp.ClientSession()
        self._client = AsyncWebClient(
            token=self._token,
            base_url=self.settings.api_url,
            session=self._session,
            logger=log,
        )
        try:
            await self._authenticate()
            self._app = self._build()
            if self.mode == "socket":
                self._socket = AsyncSocketModeHandler(
                    self._app, self._app_token, web_client=self._client
                )
                # Ask for the WebSocket URL ourselves: slack_sdk would retry a rejected app
                # token forever, logging a traceback each time.
                self._socket.client.wss_uri = await self._socket_url()
                # connect_async, never start_async: our main() owns the loop and its lifetime.
                await self._socket.connect_async()  # type: ignore[no-untyped-call]
            else:
                await self._serve()
        except BaseException:
            await self.stop()
            raise
        log.info("slack: connected as %s (%s mode)", self.bot_user_id, self.mode)

    async def _authenticate(self) -> None:
        client = self._client
        assert client is not None
        try:
            auth = await self._until_reachable("auth.test", client.auth_test)
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in TOKEN_ERRORS:
                # One clear line (exit 2 from the CLI); the token itself is never repeated.
                raise StartError(
                    f"Slack rejected SLACK_BOT_TOKEN ({error}); use the app's Bot User OAuth "
                    "Token (xoxb-…) from its OAuth & Permissions page"
                ) from None
            raise StartError(f"Slack auth.test failed: {error}") from None
        self.bot_user_id = str(auth.get("user_id") or "")

    async def _socket_url(self) -> str:
        client = self._client
        assert client is not None
        try:
            response = await self._until_reachable(
                "apps.connections.open",
                lambda: client.apps_connections_open(app_token=self._app_token or ""),
            )
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in TOKEN_ERRORS:
                raise StartError(
                    f"Slack rejected SLACK_APP_TOKEN ({error}); use an app-level token "
                    "(xapp-…) with the connections:write scope"
                ) from None
            raise StartError(f"Slack apps.connections.open failed: {error}") from None
        return str(response["url"])

    async def _until_reachable(
        self, method: str, call: Callable[[], Awaitable[AsyncSlackResponse]]
    ) -> AsyncSlackResponse:
        """`call()`, waiting out an unreachable or failing Slack with back-off (one log line
        per attempt) until it answers or the caller cancels; Slack's refusals are raised."""
        delay, most = CONNECT_BACKOFF_SECONDS
        attempt = 0
        while True:
            attempt += 1
            wait = delay
            try:
                return await call()
            except SlackApiError as exc:
                status = int(getattr(exc.response, "status_code", 200) or 200)
                if status < 500 and status != 429:
                    raise
                reason = f"HTTP {status}"
                if status == 429:
                    wait = _retry_after(exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # Connection refused, DNS failure, reset or timeout: Slack or the network is down.
                reason = type(exc).__name__
            log.warning(
                "slack: cannot reach %s for %s (attempt %d: %s); retrying in %.0f s",
                api_host(self.settings.api_url),
                method,
                attempt,
                reason,
                wait,
            )
            await self.sleep(wait)
            delay = min(delay * 2, most)

    def _build(self) -> AsyncApp:
        http = self.mode == "http"
        app = AsyncApp(
            client=self._client,
            name="newsbot",
            # HTTP: bolt checks the signature again behind our guarded check (defence in
            # depth); Socket Mode requests are unsigned and bolt would refuse an empty secret.
            signing_secret=self._signing_secret or "" if http else "",
            request_verification_enabled=http,
            process_before_response=False,
            logger=bolt_log,
        )
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.command(SLASH_COMMAND)(self._on_command)
        for action_id in ACTION_KINDS:
            app.action(action_id)(self._on_action)
        return app

    # slack-bolt injects listener arguments by name and runs each listener in its own task;
    # these note the task so stop() can let in-flight replies finish.

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        with self._in_flight():
            await self._handle_mention(body, event)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        with self._in_flight():
            await self._handle_message(body, event)

    async def _on_command(self, ack: Ack, body: dict[str, Any]) -> None:
        with self._in_flight():
            await self._handle_command(ack, body)

    async def _on_action(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        with self._in_flight():
            await self._handle_action(ack, body, action)

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self) -> None:
        server = web.Application(client_max_size=1 << 20)
        server.router.add_post(PATH, self._on_http)
        self._runner = await listen(
            server, self.settings.http_host, self.settings.http_port, "slack.http_host/http_port"
        )

    async def stop(self) -> None:
        """Stop receiving, let in-flight replies finish, and close connections."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tasks:
            # Replies being worked on may finish (bounded: a stuck one must not hang shutdown).
            await asyncio.wait(list(self._tasks), timeout=10)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._client = None
        self._app = None

    @property
    def http_port(self) -> int | None:
        """The port /slack/events listens on (None when not serving)."""
        return bound_port(self._runner)

    # --- HTTP: every request verified before bolt sees it --------------------------------

    async def _on_http(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self._signing_secret or ""
        now = self.clock()
        verdict = verify_request(secret, body, request.headers, now)
        signature = request.headers.get("X-Slack-Signature", "")
        retry = request.headers.get("X-Slack-Retry-Num")
        if verdict == "ok" and retry is None and signature in self._seen_signatures:
            # The same signed request twice without Slack saying it retries: a replay.
            verdict = "bad"
        if verdict != "ok":
            self.refused += 1
            log.info("slack: %s request refused (401)", "stale" if verdict == "stale" else "bad")
            return web.Response(status=401)
        self._remember_signature(signature, now)
        app = self._app
        if app is None:
            return web.Response(status=503)
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            return web.Response(status=400)
        if not well_formed(payload, request.content_type):
            log.info("slack: signed request with a malformed body refused (400)")
            return web.Response(status=400)
        headers: dict[str, str | Sequence[str]] = {
            key: request.headers.getall(key) for key in request.headers
        }
        try:
            bolt_request = AsyncBoltRequest(
                body=payload, query=request.query_string, headers=headers
            )
            response = await app.async_dispatch(bolt_request)
        except Exception:
            log.exception("slack: dispatching a request failed")
            return web.Response(status=500)
        return await to_aiohttp_response(response)

    def _remember_signature(self, signature: str, now: float) -> None:
        self._seen_signatures[signature] = now
        if len(self._seen_signatures) > 5000:
            horizon = now - MAX_REQUEST_AGE
            self._seen_signatures = {
                s: at for s, at in self._seen_signatures.items() if at >= horizon
            }

    def _first_time(self, event_id: object) -> bool:
        """Whether an event is new; Slack retries (X-Slack-Retry-Num) repeat its event_id."""
        if not isinstance(event_id, str) or not event_id:
            return True
        if event_id in self._seen_events:
            log.debug("slack: event %s seen before (a retry); ignored", event_id)
            return False
        self._seen_events[event_id] = None
        if len(self._seen_events) > SEEN_EVENTS:
            self._seen_events.popitem(last=False)
        return True

    # --- inbound: bolt listeners --------------------------------------------------------

    async def _handle_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if not self._first_time(body.get("event_id")):
            return
        channel = str(event.get("channel") or "")
        if not channel or event.get("bot_id"):
            return
        question = self._without_mention(str(event.get("text") or ""))
        thread = event.get("thread_ts")
        inbound = Inbound(
            ChatRef(PLATFORM, channel),
            question,
            user=_str(event.get("user")),
            is_admin=False,  # a mention asks; changing the channel takes /newsbot and an admin
            reply_to_message_id=_str(thread),
            command_prefix=PREFIX,
        )
        # In the thread it came from (an alert's thread scopes the question to its article).
        await self._answer(inbound, channel, thread_ts=_str(thread) or _str(event.get("ts")))

    async def _handle_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Direct messages are questions; in channels we answer mentions (app_mention) only,
        # so a mention is never answered twice.
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        if not self._first_time(body.get("event_id")):
            return
        channel = str(event.get("channel") or "")
        thread = _str(event.get("thread_ts"))
        inbound = Inbound(
            ChatRef(PLATFORM, channel),
            self._without_mention(str(event.get("text") or "")),
            user=_str(event.get("user")),
            is_admin=True,  # a direct message channel belongs to its one user
            reply_to_message_id=thread,
            command_prefix=PREFIX,
        )
        await self._answer(inbound, channel, thread_ts=thread)

    async def _handle_command(self, ack: Ack, body: dict[str, Any]) -> None:
        # Acknowledge at once (Slack allows 3 s); the work happens after the ack.
        await ack()
        channel = str(body.get("channel_id") or "")
        user = str(body.get("user_id") or "")
        words = str(body.get("text") or "").strip()
        inbound = Inbound(
            ChatRef(PLATFORM, channel),
            "/" + words if words else "/help",
            user=user or None,
            is_admin=await self.is_admin(user, channel),
            command_prefix=PREFIX,
        )
        posts = await self._handle(inbound)
        await self._reply(channel, posts, ephemeral_to=user, response_url=body.get("response_url"))

    async def _handle_action(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        kind = ACTION_KINDS.get(str(action.get("action_id")))
        article_id = str(action.get("value") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        message_ts = _str((body.get("message") or {}).get("ts")) or _str(
            (body.get("container") or {}).get("message_ts")
        )
        if kind is None or not article_id or not channel:
            return
        inbound = Inbound(
            ChatRef(PLATFORM, channel),
            "",
            user=user or None,
            is_admin=False,
            reply_to_message_id=message_ts,
            action=Action(kind, article_id),
            command_prefix=PREFIX,
        )
        posts = await self._handle(inbound)
        if kind is ActionKind.WHY:
            await self._reply(channel, posts, thread_ts=message_ts)
        else:
            # A vote is acknowledged to the voter alone.
            await self._reply(channel, posts, ephemeral_to=user)

    async def _answer(self, inbound: Inbound, channel: str, thread_ts: str | None) -> None:
        if not inbound.text:
            return
        posts = await self._handle(inbound)
        await self._reply(channel, posts, thread_ts=thread_ts)

    def _without_mention(self, value: str) -> str:
        return " ".join(MENTION.sub(" ", value).split())

    async def _handle(self, inbound: Inbound) -> Sequence[Post]:
        assert self._handler is not None
        try:
            return await self._handler(inbound)
        except Exception:
            # One bad message must not go unanswered; the log has the details.
            log.exception("slack: handling a message failed")
            return [Notice(text(inbound.lang or "en", "failed"))]

    async def is_admin(self, user: str, channel: str) -> bool:
        """Whether `user` may change this channel's subscription, settings and feeds."""
        if not user:
            return False
        if channel.startswith("D") or user in self.settings.admins:
            return True
        now = time.monotonic()
        cached = self._admins.get(user)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            info = await self._require().users_info(user=user)
        except SlackApiError as exc:
            log.warning("slack: users.info failed (%s); treating as member", _error_code(exc))
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack: users.info failed (%s); treating as member", type(exc).__name__)
            return False
        member = info.get("user") or {}
        admin = bool(
            member.get("is_admin") or member.get("is_owner") or member.get("is_primary_owner")
        )
        if len(self._admins) > 10_000:
            self._admins = {k: v for k, v in self._admins.items() if v[0] > now}
        self._admins[user] = (now + self.admin_cache_seconds, admin)
        return admin

    # --- outbound -----------------------------------------------------------------------

    def _require(self) -> AsyncWebClient:
        if self._client is None:
            raise DeliveryError("Slack adapter is not started")
        return self._client

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        """Deliver one post as Block Kit messages; raise DeliveryError saying what failed.

        `skip_parts`: that many leading messages were delivered by an earlier attempt.
        """
        timestamps: list[str] = []
        # Rendering a long digest is CPU work: never on the event loop.
        messages = (await asyncio.to_thread(slack_blocks, post))[skip_parts:]
        for index, message in enumerate(messages):
            if index:
                # The Outbox booked the first message's slot; later parts book their own.
                await self._wait_turn(chat)
            try:
                if index:
                    # Earlier parts are delivered: a ratelimit here is waited out once.
                    ts = await self._post_patiently(chat.chat_id, message, chat.thread_id)
                else:
                    ts = await self._post(chat.chat_id, message, chat.thread_id)
            except SlackApiError as exc:
                raise _partial(delivery_error(exc), timestamps) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed = DeliveryError(f"Slack: {type(exc).__name__}")
                raise _partial(failed, timestamps) from exc
            timestamps.append(ts)
            self._sent_to(chat)
        return Sent(tuple(timestamps))

    def _sent_to(self, chat: ChatRef) -> None:
        """On our own (no shared pace): a send starts the channel's interval anew."""
        if self.pace is None:
            interval = self.limits.chat_interval
            at = max(self.clock() + interval, self._next_send.get(chat.chat_id, 0.0))
            self._next_send[chat.chat_id] = at

    async def _post(self, channel: str, message: SlackMessage, thread_ts: str | None) -> str:
        response = await self._require().chat_postMessage(
            channel=channel,
            text=message.text,
            blocks=list(message.blocks),
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response.get("ts") or "")

    async def _post_patiently(
        self, channel: str, message: SlackMessage, thread_ts: str | None
    ) -> str:
        """Post; when Slack says ratelimited, wait as told and try once more."""
        try:
            return await self._post(channel, message, thread_ts)
        except SlackApiError as exc:
            if _error_code(exc) != "ratelimited":
                raise
            await self.sleep(_retry_after(exc))
            return await self._post(channel, message, thread_ts)

    async def _wait_turn(self, chat: ChatRef) -> None:
        if self.pace is not None:
            await self.pace(chat)
            return
        # On our own (no Outbox): keep Slack's per-channel interval ourselves.
        now = self.clock()
        at = max(now, self._next_send.get(chat.chat_id, 0.0))
        self._next_send[chat.chat_id] = at + self.limits.chat_interval
        if at > now:
            await self.sleep(at - now)

    async def _reply(
        self,
        channel: str,
        posts: Sequence[Post],
        *,
        thread_ts: str | None = None,
        ephemeral_to: str | None = None,
        response_url: object = None,
    ) -> None:
        """Answer a user directly (paced like everything sent to the channel)."""
        for post in merge_notices(posts):
            for message in await asyncio.to_thread(slack_blocks, post):
                await self._wait_turn(ChatRef(PLATFORM, channel))
                try:
                    if ephemeral_to:
                        await self._ephemeral(channel, ephemeral_to, message, response_url)
                    else:
                        await self._post_patiently(channel, message, thread_ts)
                except SlackApiError as exc:
                    log.warning("slack: reply failed (%s)", _error_code(exc))
                    return
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("slack: reply failed (%s)", type(exc).__name__)
                    return

    async def _ephemeral(
        self, channel: str, user: str, message: SlackMessage, response_url: object
    ) -> None:
        client = self._require()

        async def post() -> None:
            await client.chat_postEphemeral(
                channel=channel, user=user, text=message.text, blocks=list(message.blocks)
            )

        try:
            try:
                await post()
            except SlackApiError as exc:
                if _error_code(exc) != "ratelimited":
                    raise
                await self.sleep(_retry_after(exc))
                await post()
        except SlackApiError as exc:
            # Not a member of that channel (yet): the slash command's response URL still works.
            if _error_code(exc) not in ("not_in_channel", "channel_not_found"):
                raise
            if not isinstance(response_url, str) or not response_url.startswith("https://"):
                raise
            assert self._session is not None
            async with self._session.post(
                response_url,
                json={"response_type": "ephemeral", "text": message.text},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                response.raise_for_status()


def delivery_error(exc: SlackApiError) -> DeliveryError:
    """Translate a Slack Web API error into what it means for the ledger."""
    error = _error_code(exc)
    if error == "ratelimited":
        seconds = _retry_after(exc)
        return DeliveryError(f"Slack rate limit: retry after {seconds:g} s", retry_after=seconds)
    if error in GONE_ERRORS:
        return DeliveryError(f"Slack: {error}", chat_gone=True)
    if error in MALFORMED_ERRORS:
        return DeliveryError(f"Slack refused the message: {error}", permanent=True)
    return DeliveryError(f"Slack: {error}")


def _error_code(exc: SlackApiError) -> str:
    response = exc.response
    try:
        return str(response.get("error") or f"HTTP {response.status_code}")
    except Exception:
        return "unknown error"


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after") or "1"
    if isinstance(raw, list):
        raw = raw[0] if raw else "1"
    try:
        return min(3600.0, max(1.0, float(raw)))
    except (TypeError, ValueError):
        return 1.0


def _str(value: object) -> str | None:
    return str(value) if value else None


__all__ = ["PATH", "SlackChat", "delivery_error", "verify_request"]


def _partial(error: DeliveryError, delivered: list[str]) -> DeliveryError:
    """Record the parts that went out before `error`, so the ledger resumes after them."""
    error.delivered_parts = len(delivered)
    error.message_ids = tuple(delivered)
    return error
