"""A loopback fake of the Slack Web API and Socket Mode, strict like Slack, plus request builders.

- Web API on `base_url` (`http://127.0.0.1:PORT/api/`): auth.test, chat.postMessage,
  chat.postEphemeral, chat.update, users.info, conversations.info, apps.connections.open.
  Parameters arrive as JSON, form or query, as slack_sdk sends them.
- Block Kit is validated as Slack does it: more than 50 blocks, a section text over 3,000
  characters, a header over 150, a button text over 75 or value over 2,000 → `invalid_blocks`;
  no `text` → `no_text` (we require the notification fallback on every message).
- One message per second per channel (a little tolerance for loopback jitter): a faster post
  draws HTTP 429 `ratelimited` with `Retry-After`. Scripted failures: `fail_next(...)`.
- Channels and users are declared by the test; unknown channel → `channel_not_found`,
  a channel without the bot → `not_in_channel`, unknown user → `user_not_found`, a wrong
  token → `invalid_auth`.
- Socket Mode: `apps.connections.open` (app token) returns `ws://…/ws`; `push_envelope`
  sends an envelope and records the client's ack.
- `signed_headers` computes Slack's v0 signature; builders make event, command and action bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T0001"
MAX_BLOCKS = 50
SECTION_CHARS = 3000
HEADER_CHARS = 150


@dataclass
class Message:
    """One message the bot posted (or updated)."""

    method: str
    channel: str
    text: str
    blocks: list[dict[str, Any]]
    ts: str
    thread_ts: str | None = None
    user: str | None = None  # ephemeral: the one user who sees it
    at: float = 0.0

    @property
    def visible(self) -> str:
        """Everything a user reads: the blocks' texts (or the fallback without blocks)."""
        if not self.blocks:
            return self.text
        return "\n".join(_block_texts(self.blocks))


@dataclass
class Failure:
    method: str
    error: str
    status: int = 200
    retry_after: int | None = None
    channel: str | None = None


@dataclass
class Channel:
    id: str
    member: bool = True
    name: str = ""


@dataclass
class User:
    id: str
    is_admin: bool = False
    is_owner: bool = False


@dataclass
class FakeSlack:
    """The fake Slack; use as `async with FakeSlack(token=...) as slack:`."""

    token: str
    app_token: str = "xapp-1-test"
    channel_interval: float = 0.95
    clock: Callable[[], float] = time.monotonic
    channels: dict[str, Channel] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._failures: list[Failure] = []
        self._last_post: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._envelopes = itertools.count(1)
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/response/{id}", self._response_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def response_url(self) -> str:
        # slack-bolt's respond() only needs a URL; ours records what it gets.
        return f"http://127.0.0.1:{self.port}/response/1"

    # --- scripting ----------------------------------------------------------------------

    def add_channel(self, channel_id: str, *, member: bool = True) -> None:
        self.channels[channel_id] = Channel(channel_id, member, name=channel_id.lower())

    def add_user(self, user_id: str, *, admin: bool = False, owner: bool = False) -> None:
        self.users[user_id] = User(user_id, admin, owner)

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        status: int = 200,
        retry_after: int | None = None,
        channel: str | None = None,
    ) -> None:
        """The next call of `method` (to `channel`, if given) fails with `error`."""
        self._failures.append(Failure(method, error, status, retry_after, channel))

    # --- what happened --------------------------------------------------------------------

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    def rate_limited(self) -> int:
        """How many calls the fake refused for going faster than Slack allows."""
        return sum(1 for _, error in self.errors if error == "ratelimited_by_fake")

    def invalid(self) -> list[tuple[str, str]]:
        """Refusals for malformed messages (what a correct bot never draws)."""
        return [e for e in self.errors if e[1] in ("invalid_blocks", "no_text", "msg_too_long")]

    def in_channel(self, channel: str) -> list[Message]:
        return [m for m in self.messages if m.channel == channel]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until `predicate()` holds (checked whenever the fake records something)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for_messages(self, n: int, within: float = 10.0) -> list[Message]:
        await self.wait_for(lambda: len(self.messages) >= n, within)
        return list(self.messages)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the Web API ----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                params.update(json.loads(raw))
            else:
                params.update(dict(urllib.parse.parse_qsl(raw.decode())))
        self.calls.append((method, params))
        try:
            return await self._dispatch(method, params, request.headers.get("Authorization", ""))
        finally:
            await self._notify()

    def _refuse(self, method: str, error: str, status: int = 200, **headers: str) -> web.Response:
        self.errors.append((method, error))
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

    async def _dispatch(self, method: str, params: dict[str, Any], auth: str) -> web.Response:
        expected = self.app_token if method == "apps.connections.open" else self.token
        if auth != f"Bearer {expected}":
            return self._refuse(method, "invalid_auth")
        failure = self._scripted(method, params.get("channel"))
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return self._refuse(method, failure.error, failure.status, **headers)
        if method == "auth.test":
            return _ok(user_id=BOT_USER, bot_id=BOT_ID, team_id=TEAM, user="newsbot", team="T")
        if method == "apps.connections.open":
            return _ok(url=f"ws://127.0.0.1:{self.port}/ws")
        if method == "users.info":
            user = self.users.get(str(params.get("user")))
            if user is None:
                return self._refuse(method, "user_not_found")
            return _ok(user={"id": user.id, "is_admin": user.is_admin, "is_owner": user.is_owner})
        if method == "conversations.info":
            channel = self.channels.get(str(params.get("channel")))
            if channel is None:
                return self._refuse(method, "channel_not_found")
            return _ok(
                channel={"id": channel.id, "name": channel.name, "is_member": channel.member}
            )
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            return self._post(method, params)
        return self._refuse(method, "unknown_method", 404)

    def _scripted(self, method: str, channel: object) -> Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.channel in (None, channel):
                self._failures.remove(failure)
                return failure
        return None

    def _post(self, method: str, params: dict[str, Any]) -> web.Response:
        channel_id = str(params.get("channel") or "")
        channel = self.channels.get(channel_id)
        if channel is None and not channel_id.startswith("D"):
            return self._refuse(method, "channel_not_found")
        if channel is not None and not channel.member:
            return self._refuse(method, "not_in_channel")
        blocks = params.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        text = params.get("text")
        if not text:
            return self._refuse(method, "no_text")
        if len(str(text)) > 40_000:
            return self._refuse(method, "msg_too_long")
        problem = block_problem(blocks)
        if problem is not None:
            self.errors.append((method, f"invalid_blocks: {problem}"))
            return self._refuse(method, "invalid_blocks")
        now = self.clock()
        last = self._last_post.get(channel_id)
        if last is not None and now - last < self.channel_interval:
            self.errors.append((method, "ratelimited_by_fake"))
            return self._refuse(method, "ratelimited", 429, **{"Retry-After": "1"})
        self._last_post[channel_id] = now
        ts = str(params.get("ts") or f"1700000000.{next(self._ts):06d}")
        user = str(params["user"]) if method == "chat.postEphemeral" else None
        thread = params.get("thread_ts")
        self.messages.append(
            Message(method, channel_id, str(text), blocks, ts, thread, user, at=now)
        )
        if method == "chat.postEphemeral":
            return _ok(message_ts=ts)
        return _ok(channel=channel_id, ts=ts, message={"text": text, "ts": ts})

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode ----------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": 1})
        await self._notify()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
                    await self._notify()
        return socket

    async def wait_connected(self, within: float = 10.0) -> None:
        await self.wait_for(lambda: bool(self._sockets), within)

    async def push_envelope(self, kind: str, payload: dict[str, Any], retry: int = 0) -> str:
        """Send an envelope (events_api, slash_commands, interactive) over the socket."""
        envelope_id = f"env-{next(self._envelopes)}"
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": retry,
                "retry_reason": "timeout" if retry else "",
            }
        )
        return envelope_id


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def block_problem(blocks: list[dict[str, Any]]) -> str | None:
    """Why Slack would refuse these blocks, or None."""
    if len(blocks) > MAX_BLOCKS:
        return f"{len(blocks)} blocks (max {MAX_BLOCKS})"
    for block in blocks:
        kind = block.get("type")
        text = block.get("text") or {}
        if kind == "section":
            if not text.get("text") or len(text["text"]) > SECTION_CHARS:
                return f"section text of {len(text.get('text') or '')} characters"
        elif kind == "header":
            if text.get("type") != "plain_text" or len(text.get("text", "")) > HEADER_CHARS:
                return "header text"
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > 10:
                return "context elements"
            if any(len(e.get("text", "")) > SECTION_CHARS for e in elements):
                return "context text"
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > 25:
                return "actions elements"
            for element in elements:
                if len(element["text"]["text"]) > 75 or len(element.get("value", "")) > 2000:
                    return "button"
                if not element.get("action_id") or len(element["action_id"]) > 255:
                    return "action_id"
        elif kind != "divider":
            return f"unknown block type {kind!r}"
    return None


def _block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block and isinstance(block["text"], dict):
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                out.append(element["text"])
            elif isinstance(element.get("text"), dict):
                out.append(element["text"]["text"])
    return out


# --- requests to the bot ---------------------------------------------------------------------


def signed_headers(
    secret: str, body: str, timestamp: int | str | None = None, **extra: str
) -> dict[str, str]:
    """Headers Slack sends: the request timestamp and its v0 HMAC-SHA256 signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
        **extra,
    }


def event_body(event: dict[str, Any], event_id: str = "Ev001") -> str:
    """An Events API callback as JSON."""
    return json.dumps(
        {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
            "event": event,
        }
    )


def mention(
    channel: str, user: str, text: str, ts: str, thread_ts: str | None = None
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "channel": channel,
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def command_fields(channel: str, user: str, text: str, response_url: str = "") -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": TEAM,
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": "/newsbot",
        "text": text,
        "response_url": response_url,
        "trigger_id": "trigger",
        "api_app_id": "A1",
    }


def command_body(channel: str, user: str, text: str, response_url: str = "") -> str:
    """A slash command as Slack posts it (form-encoded)."""
    return urllib.parse.urlencode(command_fields(channel, user, text, response_url))


def action_payload(
    channel: str, user: str, message_ts: str, action_id: str, value: str
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": user},
        "api_app_id": "A1",
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts, "text": "alert"},
        "trigger_id": "trigger",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1",
            }
        ],
    }


def action_body(channel: str, user: str, message_ts: str, action_id: str, value: str) -> str:
    """A button press as Slack posts it (form-encoded `payload=`)."""
    payload = action_payload(channel, user, message_ts, action_id, value)
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
