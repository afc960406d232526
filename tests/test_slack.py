"""The Slack adapter: real slack-bolt and slack_sdk against the loopback fake Slack, real core."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bot import app, commands, digest, jobs, qa
from bot.chat import Handler, StartError
from bot.chat.slack import SlackChat, verify_request
from bot.config import Settings, SlackSettings
from bot.conversation import Conversation
from bot.ledger import AlertOwed
from bot.models import Alert, Article, ChatRef, DigestItem, Inbound, Post
from bot.outbox import Outbox
from bot.store import Store

from .conftest import ROOT, SEED, database_env, start_run
from .fake_slack import (
    BOT_USER,
    FORM,
    JSON,
    FakeSlack,
    action_body,
    command_body,
    command_fields,
    event_body,
    mention,
    signed_headers,
)
from .fakes import VirtualClock
from .repos import repositories, routing

TOKEN = "xoxb-test-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APP_TOKEN = "xapp-1-test"
CHANNEL = "C0ALERTS"
OTHER = "C0OTHER"
ADMIN = "UADMIN"
MEMBER = "UMEMBER"
HOSTILE = "<!channel> & <@U999> <https://evil.example|click> *bold* 😀 𝔘𝔫𝔦"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_env(settings: Settings, api_url: str, port: str, token: str = TOKEN) -> dict[str, str]:
    """The environment of a real `newsbot run` with Slack (HTTP mode) and nothing else."""
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": SECRET,
        "NEWSBOT_SLACK_API_URL": api_url,
        "NEWSBOT_SLACK_PORT": port,
        "NEWSBOT_ARTICLES": str(settings.articles.folder),
        "NEWSBOT_DATA_DIR": str(settings.storage.data_dir),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
    }
    for name in ("NEWSBOT_DATABASE_URL", "TELEGRAM_BOT_TOKEN", "SLACK_APP_TOKEN"):
        env.pop(name, None)
    return env | database_env(settings)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN) as fake:
        fake.add_channel(CHANNEL)
        fake.add_channel(OTHER)
        fake.add_user(ADMIN, admin=True)
        fake.add_user(MEMBER)
        yield fake


@pytest.fixture
async def seeded(settings: Settings, store: Store) -> tuple[qa.Index, Article]:
    index = qa.Index.build([])
    report = await jobs.ingest(
        [SEED], store.catalog, thresholds=settings.classifier.thresholds(), index=index
    )
    [(article, _verdict)] = report.changed
    return index, article


def slack_settings(fake: FakeSlack, **changes: Any) -> SlackSettings:
    return SlackSettings(api_url=fake.base_url, http_port=free_port(), **changes)


def adapter_for(fake: FakeSlack, **kwargs: Any) -> SlackChat:
    settings = kwargs.pop("slack", None) or slack_settings(fake)
    kwargs.setdefault("signing_secret", SECRET)
    return SlackChat(TOKEN, settings, commands=commands.infos(), **kwargs)


@contextlib.asynccontextmanager
async def running(
    fake: FakeSlack,
    settings: Settings,
    store: Store,
    index: qa.Index | None = None,
    handler: Handler | None = None,
    **kwargs: Any,
) -> AsyncIterator[SlackChat]:
    adapter = adapter_for(fake, **kwargs)
    conversation = Conversation(*repositories(store), index or qa.Index.build([]), settings)
    await adapter.start(handler or conversation.handle)
    try:
        yield adapter
    finally:
        await adapter.stop()


async def deliver(
    adapter: SlackChat,
    body: str | bytes,
    headers: dict[str, str] | None = None,
    *,
    content_type: dict[str, str] = JSON,
) -> tuple[int, str]:
    """POST to the bot's /slack/events as Slack would (signed unless headers are given)."""
    if headers is None:
        text = body.decode() if isinstance(body, bytes) else body
        headers = signed_headers(SECRET, text)
    url = f"http://127.0.0.1:{adapter.http_port}/slack/events"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={**content_type, **headers}) as response,
    ):
        return response.status, await response.text()


async def command(adapter: SlackChat, user: str, text: str, channel: str = CHANNEL) -> int:
    status, _ = await deliver(adapter, command_body(channel, user, text), content_type=FORM)
    return status


# --- HTTP mode: verification, commands, permissions ------------------------------------------


async def test_url_verification_is_answered(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    async with running(slack, settings, store) as adapter:
        body = json.dumps({"token": "t", "challenge": "3eZbrw1aB", "type": "url_verification"})
        status, text = await deliver(adapter, body)
    assert status == 200 and "3eZbrw1aB" in text
    assert slack.calls_to("auth.test")  # the token was checked at start


async def test_command_is_acked_before_the_work_runs(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    """Slack wants the ack within 3 s: it must not wait for the handler at all."""
    acked = asyncio.Event()
    conversation = Conversation(*repositories(store), qa.Index.build([]), settings)

    async def slow_handler(inbound: Inbound) -> list[Post]:
        await acked.wait()  # would deadlock if the HTTP response waited for the work
        return await conversation.handle(inbound)

    async with running(slack, settings, store, handler=slow_handler) as adapter:
        assert await command(adapter, ADMIN, "subscribe") == 200
        acked.set()
        [reply] = await slack.wait_for_messages(1)
    assert reply.method == "chat.postEphemeral" and reply.user == ADMIN
    assert "Subscribed" in reply.visible
    subscription = await store.subscriptions.subscription(ChatRef("slack", CHANNEL))
    assert subscription is not None and subscription.active


@pytest.mark.reliability
async def test_non_admin_is_refused_admins_and_configured_users_allowed(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    """Checklist 25 (Slack): a member can't change the channel; anyone may ask and look."""
    slack.add_user("UCONFIG")
    configured = slack_settings(slack, admins=("UCONFIG",))
    async with running(slack, settings, store, slack=configured) as adapter:
        for text in ("subscribe", "settings alerts off", "sources add https://news.example/rss"):
            assert await command(adapter, MEMBER, text) == 200
        await slack.wait_for_messages(3)
        assert await store.subscriptions.subscription(ChatRef("slack", CHANNEL)) is None
        assert await store.sources.active() == []
        assert await command(adapter, MEMBER, "settings") == 200  # looking is fine
        await slack.wait_for_messages(4)
        assert await command(adapter, "UCONFIG", "subscribe", channel=OTHER) == 200
        await slack.wait_for_messages(5)
    refusals = [m.visible for m in slack.messages[:3]]
    assert all("Only chat administrators" in r for r in refusals)
    assert "Subscribed: no" in slack.messages[3].visible
    assert "Subscribed" in slack.messages[4].visible
    assert (await store.subscriptions.subscription(ChatRef("slack", OTHER))) is not None
    # users.info once for the member (cached), never for the configured admin
    assert [c["user"] for c in slack.calls_to("users.info")] == [MEMBER]


async def test_help_is_generated_for_the_slash_command(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    async with running(slack, settings, store) as adapter:
        assert await command(adapter, MEMBER, "") == 200
        [reply] = await slack.wait_for_messages(1)
    for name in ("subscribe", "unsubscribe", "digest", "settings", "sources", "ask", "help"):
        assert f"/newsbot {name}" in reply.visible


@pytest.mark.reliability
async def test_forged_stale_replayed_and_malformed_requests_get_401_never_500(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    """Checklist 23: every forged request 401, the valid one 200, nothing processed."""
    body = command_body(CHANNEL, ADMIN, "subscribe")
    now = int(time.time())
    good = signed_headers(SECRET, body, now)
    six_minutes_ago = signed_headers(SECRET, body, now - 360)
    forged: list[dict[str, str]] = [
        signed_headers("not-the-secret", body, now),  # wrong signature
        {**good, "X-Slack-Signature": "v0=" + "0" * 64},
        six_minutes_ago,  # stale, and a replay of a once-valid request
        {**good, "X-Slack-Request-Timestamp": "abc"},  # non-numeric
        {**good, "X-Slack-Request-Timestamp": "9" * 5000},  # 5,000 digits
        {**good, "X-Slack-Request-Timestamp": "-5"},
        {**good, "X-Slack-Signature": "v0=ünïcödé"},  # non-ASCII signature
        {"X-Slack-Request-Timestamp": str(now)},  # signature missing
        {"X-Slack-Signature": good["X-Slack-Signature"]},  # timestamp missing
        {},  # no headers at all
    ]
    async with running(slack, settings, store) as adapter:
        statuses = [await deliver(adapter, body, h, content_type=FORM) for h in forged]
        # Bytes that are not UTF-8, correctly signed over those bytes, are refused too.
        raw = b"\xff\xfe payload"
        stamp = str(now)
        digest_hex = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
        raw_headers = {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest_hex.hexdigest(),
        }
        raw_status, _ = await deliver(adapter, raw, raw_headers)
        assert await settle(slack) == 0
        assert await store.subscriptions.subscription(ChatRef("slack", CHANNEL)) is None
        valid, _ = await deliver(adapter, body, good, content_type=FORM)
        await slack.wait_for_messages(1)
        replay, _ = await deliver(adapter, body, good, content_type=FORM)  # same request again
    assert [status for status, _ in statuses] == [401] * len(forged)
    assert raw_status in (400, 401)
    assert valid == 200 and replay == 401
    assert adapter.refused == len(forged) + 1 + (raw_status == 401)
    assert len(slack.messages) == 1  # only the valid request was processed


@pytest.mark.reliability
async def test_signed_but_malformed_bodies_get_400_never_500(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    """slack-bolt raises on bodies of the wrong shape; a signed one must still not be a 500."""
    bodies = [
        ("[]", JSON),
        ("null", JSON),
        ('{"type": "event_callback", "event": []}', JSON),
        ('{"type": "event_callback", "event": {}, "authorizations": [1]}', JSON),
        ("payload=%5B%5D", FORM),
        ("payload=not-json", FORM),
        ("payload=" + json.dumps({"type": "block_actions", "actions": "x"}), FORM),
    ]
    async with running(slack, settings, store) as adapter:
        statuses = [(await deliver(adapter, body, content_type=kind))[0] for body, kind in bodies]
    assert statuses == [400] * len(bodies)


async def settle(fake: FakeSlack) -> int:
    """Messages posted so far, after giving any (wrongly) accepted request time to post."""
    for _ in range(20):
        await asyncio.sleep(0)
    return len(fake.messages)


def test_verify_request_guards_the_sdk_verifier() -> None:
    body = b"x=1"
    now = 1_700_000_000.0
    headers = signed_headers(SECRET, "x=1", int(now))
    assert verify_request(SECRET, body, headers, now) == "ok"
    assert verify_request(SECRET, body, headers, now + 301) == "stale"
    for stamp in ("", "1e9", "٣٣٣", "9" * 5000, " 1700000000"):
        assert (
            verify_request(SECRET, body, {**headers, "X-Slack-Request-Timestamp": stamp}, now)
            == "bad"
        )


# --- events: mentions, threads, retries ------------------------------------------------------


@pytest.mark.reliability
async def test_a_retried_event_is_acknowledged_and_answered_once(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    """Checklist 11: X-Slack-Retry-Num with the same event_id → 200, side effects once."""
    index, _ = seeded
    body = event_body(mention(CHANNEL, MEMBER, "who attends from Germany?", "1.0001"), "Ev42")
    async with running(slack, settings, store, index) as adapter:
        first, _ = await deliver(adapter, body)
        [answer] = await slack.wait_for_messages(1)
        retries = []
        for attempt in (1, 2):
            headers = signed_headers(
                SECRET, body, int(time.time()) - attempt, **{"X-Slack-Retry-Num": str(attempt)}
            )
            retries.append((await deliver(adapter, body, headers))[0])
        # A later event is answered after any (wrong) second answer to the retried one.
        sentinel = mention(OTHER, MEMBER, "who attends from Germany?", "1.0002")
        await deliver(adapter, event_body(sentinel, "Ev43"))
        await slack.wait_for(lambda: any(m.thread_ts == "1.0002" for m in slack.messages))
        await settle(slack)
    assert first == 200 and retries == [200, 200]
    assert [m.thread_ts for m in slack.messages] == ["1.0001", "1.0002"]
    assert "Michaelis" in answer.visible and answer.thread_ts == "1.0001"


async def test_question_in_an_alert_thread_is_scoped_and_answered_there(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, article = seeded
    chat = ChatRef("slack", CHANNEL)
    await store.subscriptions.subscribe(chat, "en")
    await jobs.route(
        [(article, (await store.catalog.entries([article.id]))[0][1])],
        *routing(store),
        None,
        alert_threshold=0.0,
        now=datetime.now(UTC),
    )
    async with running(slack, settings, store, index) as adapter:
        outbox = Outbox(store.ledger, store.subscriptions, {"slack": adapter})
        await outbox.drain()
        [alert] = await slack.wait_for_messages(1)
        question = mention(CHANNEL, MEMBER, "who attends from Germany?", "2.0001", alert.ts)
        await deliver(adapter, event_body(question, "Ev7"))
        _, answer = await slack.wait_for_messages(2)
    assert alert.blocks[0]["type"] == "header" and alert.text
    assert answer.thread_ts == alert.ts and "Michaelis" in answer.visible
    assert slack.rate_limited() == 0 and slack.invalid() == []


async def test_direct_message_is_a_question_and_own_messages_are_ignored(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, _ = seeded
    dm = {"type": "message", "channel": "D0DM", "channel_type": "im", "user": MEMBER}
    async with running(slack, settings, store, index) as adapter:
        own = {**dm, "bot_id": "BBOT", "user": BOT_USER, "text": "Alert", "ts": "3.1"}
        await deliver(adapter, event_body(own, "Ev1"))
        channel_chatter = {**dm, "channel": CHANNEL, "channel_type": "channel", "text": "hi"}
        await deliver(adapter, event_body({**channel_chatter, "ts": "3.2"}, "Ev2"))
        await deliver(
            adapter, event_body({**dm, "text": "wer vertritt Deutschland?", "ts": "3.3"}, "Ev3")
        )
        [answer] = await slack.wait_for_messages(1)
        await settle(slack)
    assert answer.channel == "D0DM" and "Michaelis" in answer.visible
    assert len(slack.messages) == 1


# --- outbound: Block Kit, buttons, errors ----------------------------------------------------


async def test_alert_is_block_kit_with_escaped_text_and_buttons(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    item = DigestItem(
        "a1",
        f"Title {HOSTILE}",
        f"Summary {HOSTILE}",
        0.93,
        reasons=("Truppen", "<b>"),
        source="Wire & Co",
        url="https://news.example/a?x=1&y=2",
        published="2026-01-01",
    )
    async with running(slack, settings, store) as adapter:
        sent = await adapter.send(ChatRef("slack", CHANNEL), Alert(item))
    [message] = slack.messages
    assert sent.message_ids == (message.ts,)
    everything = json.dumps(message.blocks, ensure_ascii=False) + message.text
    for dangerous in ("<!channel>", "<@U999>", "<https://evil.example|click>"):
        assert dangerous not in json.dumps(message.blocks, ensure_ascii=False)
    assert "&lt;!channel&gt; &amp; &lt;@U999&gt;" in everything
    kinds = [b["type"] for b in message.blocks]
    assert kinds == ["header", "section", "context", "actions"]
    buttons = message.blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["why", "vote_up", "vote_down"]
    assert {b["value"] for b in buttons} == {"a1"}
    context = " ".join(e["text"] for e in message.blocks[2]["elements"])
    assert "<https://news.example/a?x=1&amp;y=2|Wire &amp; Co, 2026-01-01>" in context
    assert "Truppen" in context
    assert message.text.startswith("🚨 Alert")


async def test_why_and_vote_buttons(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, article = seeded
    async with running(slack, settings, store, index) as adapter:
        [(stored, verdict)] = await store.catalog.entries([article.id])
        await adapter.send(ChatRef("slack", CHANNEL), Alert(digest.item(stored, verdict)))
        [alert] = await slack.wait_for_messages(1)
        for action_id in ("why", "vote_up"):
            body = action_body(CHANNEL, MEMBER, alert.ts, action_id, article.id)
            status, _ = await deliver(adapter, body, content_type=FORM)
            assert status == 200
        _, why, thanks = await slack.wait_for_messages(3, within=15)
    assert why.thread_ts == alert.ts and "Score" in why.visible
    assert thanks.method == "chat.postEphemeral" and thanks.visible.startswith("Thanks")
    [(voted, relevant)] = await store.catalog.feedback_examples()
    assert voted.id == article.id and relevant is True


@pytest.mark.reliability
async def test_eighty_item_digest_fits_block_kit_limits(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    """Checklist 19 (Slack): ≤ 50 blocks, sections ≤ 3,000 characters, a text fallback each."""
    items = tuple(
        DigestItem(
            f"id{n}",
            f"Item {n}: {HOSTILE}",
            "Lorem ipsum & <dolor> " * 200,
            0.9,
            reasons=("r",) * 5,
            topic=f"Topic {n % 3}",
            who=("A <b>",) * 40,
        )
        for n in range(80)
    )
    post = app_digest(items)
    async with running(slack, settings, store) as adapter:
        sent = await adapter.send(ChatRef("slack", CHANNEL), post)
    assert len(sent.message_ids) == len(slack.messages) >= 4
    assert slack.invalid() == [] and slack.rate_limited() == 0
    for message in slack.messages:
        assert len(message.blocks) <= 50 and message.text
        for block in message.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
    for n in range(80):
        holders = [m for m in slack.messages if f"*Item {n}: " in m.visible]
        assert len(holders) == 1  # every item whole, in exactly one message


def app_digest(items: Sequence[DigestItem]) -> Post:
    from bot.models import Digest

    return Digest(items=tuple(items), generated_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.reliability
async def test_429_retry_after_pauses_sending_and_retries_once(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    """Checklist 10: Retry-After 3 → nothing sent for ≥ 3 s, the message tried exactly twice."""
    _, article = seeded
    clock = VirtualClock()
    slack.clock = lambda: clock().timestamp()
    chat = ChatRef("slack", CHANNEL)
    await store.ledger.enqueue(chat, article.id, AlertOwed(article.id))
    slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=3)
    async with running(slack, settings, store) as adapter:
        outbox = Outbox(
            store.ledger, store.subscriptions, {"slack": adapter}, clock=clock, sleep=clock.sleep
        )
        started = clock()
        await outbox.drain()
    attempts = slack.calls_to("chat.postMessage")
    [row] = await store.ledger.deliveries()
    assert len(attempts) == 2 and len(slack.messages) == 1
    assert (clock() - started).total_seconds() >= 3.0
    assert slack.messages[0].at - started.timestamp() >= 3.0
    assert row["status"] == "sent" and row["attempts"] == 1  # the wait was no failed attempt


async def test_error_mapping(slack: FakeSlack, settings: Settings, store: Store) -> None:
    slack.add_channel("C0NOTIN", member=False)
    item = DigestItem("a1", "T", "S", 0.9)
    async with running(slack, settings, store) as adapter:
        errors = []
        for channel in ("C0GONE", "C0NOTIN"):
            with pytest.raises(Exception) as caught:
                await adapter.send(ChatRef("slack", channel), Alert(item))
            errors.append(caught.value)
        slack.fail_next("chat.postMessage", "invalid_blocks")
        with pytest.raises(Exception) as malformed:
            await adapter.send(ChatRef("slack", CHANNEL), Alert(item))
        slack.fail_next("chat.postMessage", "internal_error", status=500)
        with pytest.raises(Exception) as server:
            await adapter.send(ChatRef("slack", OTHER), Alert(item))
    from bot.chat import DeliveryError

    assert all(isinstance(e, DeliveryError) and e.chat_gone for e in errors)
    assert isinstance(malformed.value, DeliveryError) and malformed.value.permanent
    assert isinstance(server.value, DeliveryError)
    assert not server.value.permanent and server.value.retry_after is None


async def test_rejected_token_is_one_clear_line_without_the_token(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    adapter = SlackChat("xoxb-wrong-secret-value", slack_settings(slack), signing_secret=SECRET)
    with pytest.raises(StartError) as caught:
        await adapter.start(Conversation(*repositories(store), qa.Index.build([]), settings).handle)
    message = str(caught.value)
    assert "SLACK_BOT_TOKEN" in message and "invalid_auth" in message
    assert "xoxb-wrong" not in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_missing_signing_secret_and_app_token_is_a_config_error(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    adapter = SlackChat(TOKEN, slack_settings(slack))
    with pytest.raises(StartError, match="SLACK_SIGNING_SECRET"):
        await adapter.start(Conversation(*repositories(store), qa.Index.build([]), settings).handle)


# --- Socket Mode -----------------------------------------------------------------------------


async def test_socket_mode_commands_and_events(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, _ = seeded
    async with running(
        slack, settings, store, index, signing_secret=None, app_token=APP_TOKEN
    ) as adapter:
        assert adapter.mode == "socket"
        await slack.wait_connected()
        envelope = await slack.push_envelope(
            "slash_commands", command_fields(CHANNEL, ADMIN, "subscribe")
        )
        await slack.wait_for(lambda: envelope in slack.acks)
        [reply] = await slack.wait_for_messages(1)
        event = json.loads(
            event_body(mention(CHANNEL, MEMBER, "who attends from Germany?", "5.1"), "Ev9")
        )
        first = await slack.push_envelope("events_api", event)
        retry = await slack.push_envelope("events_api", event, retry=1)
        await slack.wait_for(lambda: retry in slack.acks and first in slack.acks)
        _, answer = await slack.wait_for_messages(2)
        sentinel = json.loads(event_body(mention(OTHER, MEMBER, "who?", "5.2"), "Ev10"))
        await slack.push_envelope("events_api", sentinel)
        await slack.wait_for(lambda: any(m.thread_ts == "5.2" for m in slack.messages))
        await settle(slack)
    assert "Subscribed" in reply.visible
    assert "Michaelis" in answer.visible
    assert [m.thread_ts for m in slack.messages] == [None, "5.1", "5.2"]
    assert slack.calls_to("apps.connections.open")


async def test_rejected_app_token_is_one_clear_line(
    slack: FakeSlack, settings: Settings, store: Store
) -> None:
    adapter = adapter_for(slack, signing_secret=None, app_token="xapp-wrong")
    with pytest.raises(StartError, match="SLACK_APP_TOKEN") as caught:
        await adapter.start(Conversation(*repositories(store), qa.Index.build([]), settings).handle)
    assert "xapp-wrong" not in str(caught.value)


# --- pacing and the service ------------------------------------------------------------------


@pytest.mark.reliability
async def test_replies_and_alerts_share_the_per_channel_pace(
    slack: FakeSlack, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    """An alert, then four command replies at once to one channel: no 429 from Slack."""
    index, article = seeded
    pacing = app.ReplyPacing()
    async with running(slack, settings, store, index, pace=pacing) as adapter:
        outbox = Outbox(store.ledger, store.subscriptions, {"slack": adapter})
        pacing.outbox = outbox
        chat = ChatRef("slack", CHANNEL)
        await store.ledger.enqueue(chat, article.id, AlertOwed(article.id))
        await outbox.drain()
        for text in ("help", "settings", "digest", "sources"):
            assert await command(adapter, ADMIN, text) == 200
        messages = await slack.wait_for_messages(5, within=20)
    assert slack.rate_limited() == 0 and slack.invalid() == []
    gaps = [b.at - a.at for a, b in itertools.pairwise(messages)]
    assert all(gap >= 0.95 for gap in gaps)


async def test_both_platforms_in_one_process_each_get_one_alert(settings: Settings) -> None:
    """Telegram and Slack configured: one dropped article → one alert on each."""
    from bot.chat.telegram import TelegramChat

    from .fake_telegram import FakeTelegram

    async with FakeTelegram(token="123:T") as tg, FakeSlack(token=TOKEN) as fake:
        fake.add_channel(CHANNEL)
        fake.add_user(ADMIN, admin=True)
        pacing = app.ReplyPacing()
        telegram = TelegramChat(
            "123:T",
            settings.telegram.model_copy(update={"api_url": tg.base_url}),
            commands=commands.infos(),
            poll_timeout=1.0,
            pace=pacing,
        )
        slack_adapter = adapter_for(fake, pace=pacing)
        stop = asyncio.Event()
        service = asyncio.create_task(
            app.run(settings, adapters=[telegram, slack_adapter], stop=stop, pacing=pacing)
        )
        try:
            await tg.wait_for_calls("getUpdates", 1, timeout=10)
            tg.push_message(42, "/start")
            await tg.wait_for_sent(1, timeout=10)
            async with asyncio.timeout(10):
                while slack_adapter.http_port is None:  # noqa: ASYNC110 (started by the service)
                    await asyncio.sleep(0.01)
            assert await command(slack_adapter, ADMIN, "subscribe") == 200
            await fake.wait_for_messages(1)
            shutil.copy(SEED, settings.articles.folder)
            await tg.wait_for_sent(2, timeout=15)
            await fake.wait_for_messages(2, within=15)
            await asyncio.sleep(0.5)  # would any second alert follow?
        finally:
            stop.set()
            code = await service
    assert code == 0
    assert [m.visible_text.startswith("🚨 Alert") for m in tg.sent[1:]] == [True]
    alerts = [m for m in fake.messages if m.method == "chat.postMessage"]
    assert len(alerts) == 1 and alerts[0].channel == CHANNEL and alerts[0].text.startswith("🚨")


async def test_newsbot_run_with_slack_from_the_environment(settings: Settings) -> None:
    """Issue 10's Done-when, with the real `newsbot run` process configured by environment."""
    import signal

    port = free_port()
    async with FakeSlack(token=TOKEN) as fake:
        fake.add_channel(CHANNEL)
        fake.add_channel(OTHER)
        fake.add_user(ADMIN, admin=True)
        fake.add_user(MEMBER)
        env = run_env(settings, fake.base_url, str(port))
        process = await start_run(env)
        url = f"http://127.0.0.1:{port}/slack/events"
        try:
            async with aiohttp.ClientSession() as session:

                async def post(
                    body: str, headers: dict[str, str] | None = None, form: bool = False
                ) -> tuple[int, str, float]:
                    sent_headers = signed_headers(SECRET, body) if headers is None else headers
                    kind = FORM if form else JSON
                    began = time.monotonic()
                    async with session.post(url, data=body, headers={**kind, **sent_headers}) as r:
                        return r.status, await r.text(), time.monotonic() - began

                verification = json.dumps({"type": "url_verification", "challenge": "ch4ll"})
                for _ in range(300):  # until the process listens
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        status, text, _ = await post(verification)
                        break
                    await asyncio.sleep(0.1)
                assert status == 200 and "ch4ll" in text
                status, _, took = await post(command_body(CHANNEL, ADMIN, "subscribe"), form=True)
                assert status == 200 and took < 3.0
                refused, _, _ = await post(command_body(OTHER, MEMBER, "subscribe"), form=True)
                assert refused == 200
                await fake.wait_for(lambda: len(fake.messages) >= 2, within=15)
                shutil.copy(SEED, settings.articles.folder)
                await fake.wait_for(
                    lambda: any(m.method == "chat.postMessage" for m in fake.messages), within=20
                )
                [alert] = [m for m in fake.messages if m.method == "chat.postMessage"]
                question = mention(CHANNEL, MEMBER, "who attends from Germany?", "9.1", alert.ts)
                body = event_body(question, "EvDone")
                assert (await post(body))[0] == 200
                retry = signed_headers(
                    SECRET, body, int(time.time()) - 1, **{"X-Slack-Retry-Num": "1"}
                )
                assert (await post(body, retry))[0] == 200
                plain = event_body(
                    mention(CHANNEL, MEMBER, "who attends from Germany?", "9.2"), "EvPlain"
                )
                assert (await post(plain))[0] == 200
                await fake.wait_for(
                    lambda: len([m for m in fake.messages if m.method == "chat.postMessage"]) >= 3,
                    within=20,
                )
                forged = [
                    signed_headers("wrong", body),
                    signed_headers(SECRET, body, int(time.time()) - 400),
                    {**signed_headers(SECRET, body), "X-Slack-Request-Timestamp": "9" * 5000},
                    {**signed_headers(SECRET, body), "X-Slack-Request-Timestamp": "now"},
                    {},
                ]
                forged_statuses = [(await post(body, h))[0] for h in forged]
                # Answered after anything that was (wrongly) processed twice.
                last = mention(OTHER, MEMBER, "who attends from Germany?", "9.3")
                assert (await post(event_body(last, "EvLast")))[0] == 200
                await fake.wait_for(
                    lambda: any(m.thread_ts == "9.3" for m in fake.messages), within=20
                )
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 20)
            assert process.stderr is not None
            stderr = (await process.stderr.read()).decode(errors="replace")
    assert code == 0, stderr
    subscribed, refusal = sorted(
        (m for m in fake.messages if m.method == "chat.postEphemeral"), key=lambda m: m.channel
    )
    assert subscribed.channel == CHANNEL and "Subscribed" in subscribed.visible
    assert refusal.channel == OTHER and "Only chat administrators" in refusal.visible
    posts = [m for m in fake.messages if m.method == "chat.postMessage" and m.thread_ts != "9.3"]
    assert [m.channel for m in posts] == [CHANNEL] * 3  # the subscribed channel only
    assert posts[0].blocks[0]["type"] == "header" and posts[0].text.startswith("🚨 Alert")
    answers = posts[1:]
    assert {m.thread_ts for m in answers} == {alert.ts, "9.2"}  # each once, in its thread
    assert all("Michaelis" in m.visible for m in answers)
    assert forged_statuses == [401] * len(forged)
    assert fake.rate_limited() == 0 and fake.invalid() == []
    assert TOKEN not in stderr and SECRET not in stderr


async def test_newsbot_run_with_a_rejected_slack_token_exits_2_with_one_line(
    settings: Settings,
) -> None:

    async with FakeSlack(token=TOKEN) as fake:
        env = run_env(settings, fake.base_url, str(free_port()), token="xoxb-revoked-0123456789")
        process = await start_run(env, stdout=True)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = (stdout + stderr).decode()
    assert process.returncode == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "SLACK_BOT_TOKEN" in lines[0] and "invalid_auth" in lines[0]
    assert "xoxb-revoked" not in output and "Traceback" not in output


# --- Slack unreachable or failing at start ---------------------------------------------------


async def test_slack_failing_at_start_is_retried_until_it_answers(
    slack: FakeSlack, settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 and a 429 from auth.test are waited out (Retry-After honoured), not a crash."""
    slack.fail_next("auth.test", "service_unavailable", status=503)
    slack.fail_next("auth.test", "ratelimited", status=429, retry_after=7)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with running(slack, settings, store, sleep=sleep) as adapter:
        assert adapter.bot_user_id == BOT_USER
        assert await command(adapter, ADMIN, "help") == 200
    # The first three calls are start's attempts (bolt calls auth.test again later, per request).
    assert [name for name, _ in slack.calls[:3]] == ["auth.test"] * 3
    assert waits == [1.0, 7.0]
    attempts = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(attempts) == 2
    assert "auth.test (attempt 1: HTTP 503); retrying in 1 s" in attempts[0]
    assert "auth.test (attempt 2: HTTP 429); retrying in 7 s" in attempts[1]
    assert all(f"http://127.0.0.1:{slack.port} " in line for line in attempts)


async def test_refused_connections_at_start_back_off_one_line_per_attempt(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at the API URL: each attempt waits twice as long as the one before."""
    port = free_port()
    waits: list[float] = []

    class GaveUp(Exception):
        pass

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise GaveUp

    adapter = SlackChat(
        TOKEN,
        SlackSettings(api_url=f"http://127.0.0.1:{port}/api/", http_port=free_port()),
        signing_secret=SECRET,
        sleep=sleep,
    )
    with pytest.raises(GaveUp):
        await adapter.start(Conversation(*repositories(store), qa.Index.build([]), settings).handle)
    assert waits == [1.0, 2.0, 4.0]
    attempts = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert [f"attempt {n}: ClientConnectorError" in line for n, line in enumerate(attempts, 1)] == [
        True,
        True,
        True,
    ]
    assert adapter.http_port is None  # nothing was left listening


@pytest.mark.reliability
async def test_newsbot_run_with_slack_unreachable_waits_and_a_stop_signal_exits_zero(
    settings: Settings,
) -> None:
    """Slack unreachable at start exited 1 with a traceback; now it retries until stopped."""
    import signal

    env = run_env(settings, f"http://127.0.0.1:{free_port()}/api/", str(free_port()))
    process = await start_run(env)
    assert process.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while sum(b"cannot reach" in line for line in lines) < 2:
                line = await process.stderr.readline()
                assert line, "newsbot exited: " + b"".join(lines).decode()
                lines.append(line)
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 20)
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = (b"".join(lines) + rest).decode()
    assert code == 0, log
    assert "attempt 1" in log and "attempt 2" in log
    assert "Traceback" not in log and TOKEN not in log and SECRET not in log


async def test_bolt_does_not_warn_about_the_token_it_reads_from_the_environment(
    slack: FakeSlack,
    settings: Settings,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`newsbot run` with SLACK_BOT_TOKEN set logged bolt's "token will be unused" at start."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    async with running(slack, settings, store) as adapter:
        assert await command(adapter, ADMIN, "help") == 200
    logged = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert not any("will be unused" in line for line in logged), logged
