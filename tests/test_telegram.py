"""The Telegram adapter through the real PTB stack against the fake Bot API, with the real core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot import app, commands, jobs, qa
from bot.chat import DeliveryError
from bot.chat.render import utf16_len
from bot.chat.telegram import TelegramChat
from bot.config import Settings, TelegramSettings
from bot.conversation import Conversation
from bot.models import Alert, Article, ChatRef, Digest, DigestItem
from bot.outbox import Outbox, RetryPolicy
from bot.store import Store

from .conftest import ROOT, SEED
from .fake_telegram import FakeError, FakeTelegram, RateLimits

TOKEN = "123456:TEST-token"
USER = 42
GROUP = -555
FORUM = -1001234567890
HOSTILE = "<script>alert(1)</script> & *bold_ [link](x) 😀 𝔘𝔫𝔦 R&D <b>"


def tg_chat(chat_id: int, thread: int | None = None) -> ChatRef:
    return ChatRef("telegram", str(chat_id), str(thread) if thread else None)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    # Flood control off: these tests are about behaviour; the error tests script their 429s.
    async with FakeTelegram(token=TOKEN, rate_limits=RateLimits(enabled=False)) as fake:
        yield fake


@pytest.fixture
async def seeded(settings: Settings, store: Store) -> tuple[qa.Index, Article]:
    """The seed article ingested: stored, classified and in the QA index."""
    index = qa.Index.build([])
    report = await jobs.ingest(
        [SEED], store, thresholds=settings.classifier.thresholds(), index=index
    )
    [(article, _verdict)] = report.changed
    return index, article


def adapter_for(tg: FakeTelegram, **kwargs: Any) -> TelegramChat:
    settings = kwargs.pop("telegram", TelegramSettings(api_url=tg.base_url))
    return TelegramChat(
        TOKEN,
        settings,
        commands=commands.infos(),
        poll_timeout=1.0,
        part_interval=0.0,
        **kwargs,
    )


@contextlib.asynccontextmanager
async def running(
    tg: FakeTelegram,
    settings: Settings,
    store: Store,
    index: qa.Index | None = None,
    **kwargs: Any,
) -> AsyncIterator[TelegramChat]:
    adapter = adapter_for(tg, **kwargs)
    conversation = Conversation(store, index or qa.Index.build([]), settings)
    await adapter.start(conversation.handle)
    try:
        yield adapter
    finally:
        await adapter.stop()


async def run_outbox(outbox: Outbox, until: Any, within: float = 10.0) -> None:
    """Run the Outbox loop until `until()` holds."""
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop, idle_seconds=0.1))
    try:
        async with asyncio.timeout(within):
            # The Outbox counts a send after the store write, later than any fake event.
            while not until():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


# --- commands and questions ------------------------------------------------------------------


async def test_start_in_private_welcomes_subscribes_and_registers_menus(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    async with running(tg, settings, store):
        update = tg.push_message(USER, "/start")
        [reply] = await tg.wait_for_sent(1)
    assert "/subscribe" in reply.visible_text and "Subscribed" in reply.visible_text
    assert reply.reply_to_message_id == update["message"]["message_id"]
    subscription = await store.subscription(tg_chat(USER))
    assert subscription is not None and subscription.active
    english = {c["command"] for c in tg.my_commands()}
    assert english == {"start", "help", "subscribe", "unsubscribe", "digest", "settings"} | {
        "sources",
        "ask",
    }
    assert tg.my_commands("de")[2]["description"] == "Meldungen und Überblicke hier erhalten"
    assert tg.unhandled == []


async def test_help_in_german_for_a_german_user(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    async with running(tg, settings, store):
        tg.push_message(USER, "/help", language_code="de-AT")
        [reply] = await tg.wait_for_sent(1)
    assert "Meldungen und Überblicke abbestellen" in reply.visible_text


async def test_group_only_admins_subscribe_and_the_check_is_cached(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    tg.set_admins(GROUP, [7])
    async with running(tg, settings, store):
        tg.push_message(GROUP, "/subscribe@FakeNewsBot", user=8)
        tg.push_message(GROUP, "/subscribe", user=7)
        tg.push_message(GROUP, "/unsubscribe", user=7)
        tg.push_message(GROUP, "/foo", user=7)  # another bot's command: no "unknown command"
        tg.push_message(GROUP, "/settings", user=7)
        refused, subscribed, unsubscribed, shown = await tg.wait_for_sent(4)
    assert "Only chat administrators" in refused.visible_text
    assert subscribed.visible_text.startswith("Subscribed")
    assert unsubscribed.visible_text.startswith("Unsubscribed")
    assert shown.visible_text.startswith("Subscribed: no")
    # One lookup per user; /settings without arguments asks for no admin rights at all.
    assert [c.params["user_id"] for c in tg.calls_to("getChatMember")] == [8, 7]


async def test_topic_subscription_targets_its_thread(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, article = seeded
    tg.set_admins(FORUM, [7])
    async with running(tg, settings, store, index) as adapter:
        tg.push_message(FORUM, "/subscribe", user=7, chat_type="supergroup", thread_id=5)
        [reply] = await tg.wait_for_sent(1)
        [subscription] = await store.subscriptions()
        sent = await adapter.send(subscription.chat, await _alert(store, article))
    assert subscription.chat == tg_chat(FORUM, 5)
    assert reply.message_thread_id == 5
    alert = tg.sent[-1]
    assert alert.message_thread_id == 5 and sent.message_ids == (str(alert.message_id),)


async def test_group_questions_only_when_mentioned_or_replied_to(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, _ = seeded
    async with running(tg, settings, store, index):
        tg.push_message(GROUP, "who attends from Germany?", user=9)
        tg.push_message(GROUP, "/start@SomeOtherBot", user=9)
        tg.push_message(GROUP, "@FakeNewsBot who attends from Germany?", user=9)
        [answer] = await tg.wait_for_sent(1)
        tg.push_message(GROUP, "who attends from Germany?", user=9, reply_to=answer.message_id)
        _, second = await tg.wait_for_sent(2)
        await tg.wait_until_fetched()
    assert "Michaelis" in answer.visible_text and "Michaelis" in second.visible_text
    assert len(tg.sent) == 2
    assert tg.calls_to("getChatMember") == []  # questions need no admin check


# --- sending ---------------------------------------------------------------------------------


async def test_alert_escapes_hostile_text_and_carries_buttons(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    item = DigestItem(
        article_id="a-1",
        title=HOSTILE,
        summary="Summary " + HOSTILE,
        score=0.93,
        reasons=("<i>", "&amp;"),
        who=("A & B <c>",),
        source="dpa",
        url="https://example.org/?a=1&b=<2>",
    )
    async with running(tg, settings, store) as adapter:
        sent = await adapter.send(tg_chat(USER), Alert(item, lang="de"))
    [message] = tg.sent
    assert sent.message_ids == (str(message.message_id),)
    assert message.parse_mode == "HTML"
    assert HOSTILE in message.visible_text and "A & B <c>" in message.visible_text
    assert message.visible_text.startswith("🚨 Meldung")
    keyboard = message.reply_markup["inline_keyboard"]  # type: ignore[index]
    assert [[b["callback_data"] for b in row] for row in keyboard] == [
        ["w:a-1"],
        ["f:a-1:1", "f:a-1:0"],
    ]
    assert keyboard[0][0]["text"] == "Warum?"


async def test_alert_with_an_overlong_id_goes_out_without_buttons(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    item = DigestItem(article_id="x" * 70, title="T", summary="S", score=0.9)
    async with running(tg, settings, store) as adapter:
        await adapter.send(tg_chat(USER), Alert(item))
    assert tg.sent[0].reply_markup is None


async def test_long_digest_is_split_at_items_without_link_previews(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    items = tuple(
        DigestItem(
            article_id=f"id{n}",
            title=f"Item {n}: " + "😀 <Konflikt> & " * 5,
            summary="𝔘 Truppen & Panzer <an> der Grenze. " * 8,
            score=0.9,
            topic=f"Topic {n // 10}",
            url=f"https://example.org/{n}?a=1&b=2",
        )
        for n in range(40)
    )
    digest = Digest(items, generated_at=datetime(2026, 1, 1, tzinfo=UTC), lang="en")
    async with running(tg, settings, store) as adapter:
        sent = await adapter.send(tg_chat(USER), digest)
    parts = tg.sent
    assert len(parts) >= 3 and len(sent.message_ids) == len(parts)
    for part in parts:
        assert utf16_len(part.text) <= 4096
        assert part.link_preview_options == {"is_disabled": True}
    for n in range(40):
        holders = [p for p in parts if f"Item {n}: " in p.visible_text]
        assert len(holders) == 1  # every item whole, in exactly one part
    assert parts[1].visible_text.startswith(("•", "— Topic"))


# --- buttons ---------------------------------------------------------------------------------


async def test_why_and_feedback_buttons(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    index, article = seeded
    async with running(tg, settings, store, index) as adapter:
        await adapter.send(tg_chat(USER), await _alert(store, article))
        alert = tg.sent[0]
        why = tg.push_callback_query(USER, alert.message_id, f"w:{article.id}")
        _, reasons = await tg.wait_for_sent(2)
        vote = tg.push_callback_query(USER, alert.message_id, f"f:{article.id}:1")
        vote_id = vote["callback_query"]["id"]
        await tg.wait_for(lambda: vote_id in tg.callback_answers)
    assert "Score" in reasons.visible_text and reasons.reply_to_message_id == alert.message_id
    assert why["callback_query"]["id"] in tg.callback_answers
    assert tg.callback_answers[vote_id]["text"].startswith("Thanks")
    assert len(tg.sent) == 2  # a vote is acknowledged by a toast, not a message
    [(voted, relevant)] = await store.feedback_examples()
    assert voted.id == article.id and relevant is True


# --- errors through the Outbox -----------------------------------------------------------------


async def test_retry_after_is_honoured_and_the_message_delivered_once(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    _, article = seeded
    await store.subscribe(tg_chat(USER), "en")
    await store.enqueue(tg_chat(USER), "alert", "s1", {"article_id": article.id, "lang": "en"})
    tg.script("sendMessage", FakeError.too_many_requests(1))
    async with running(tg, settings, store) as adapter:
        outbox = Outbox(store, {"telegram": adapter})
        began = time.monotonic()
        await run_outbox(outbox, lambda: outbox.sent == 1)
    assert time.monotonic() - began >= 1.0
    assert tg.rejected_429 == 1 and len(tg.sent) == 1
    [row] = await store.deliveries("sent")
    assert row["attempts"] == 1  # a flood wait is not a failed attempt


async def test_blocked_chat_is_deactivated_and_the_fan_out_goes_on(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    _, article = seeded
    for chat_id in (101, 102, 103):
        await store.subscribe(tg_chat(chat_id), "en")
        payload = {"article_ids": [article.id], "lang": "en"}
        await store.enqueue(tg_chat(chat_id), "digest", "slot", payload)
    tg.block(102)
    async with running(tg, settings, store) as adapter:
        outbox = Outbox(store, {"telegram": adapter})
        await run_outbox(outbox, lambda: outbox.sent + outbox.failed == 3)
    assert sorted(s.chat_id for s in tg.sent) == [101, 103]
    blocked = await store.subscription(tg_chat(102))
    assert blocked is not None and not blocked.active
    assert len(tg.calls_to("sendMessage")) == 3  # never retried


async def test_migrated_group_is_moved_and_the_message_resent_once(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    _, article = seeded
    await store.subscribe(tg_chat(GROUP), "en")
    await store.enqueue(tg_chat(GROUP), "alert", "s1", {"article_id": article.id, "lang": "en"})
    tg.migrate_chat(GROUP, -1009999)
    async with running(tg, settings, store) as adapter:
        outbox = Outbox(store, {"telegram": adapter})
        await run_outbox(outbox, lambda: outbox.sent == 1)
    assert [s.chat_id for s in tg.sent] == [-1009999]
    assert await store.subscription(tg_chat(GROUP)) is None
    moved = await store.subscription(tg_chat(-1009999))
    assert moved is not None and moved.active


async def test_server_errors_are_retried(
    tg: FakeTelegram, settings: Settings, store: Store, seeded: tuple[qa.Index, Article]
) -> None:
    _, article = seeded
    await store.enqueue(tg_chat(USER), "alert", "s1", {"article_id": article.id, "lang": "en"})
    tg.script("sendMessage", FakeError.server_error(502))
    async with running(tg, settings, store) as adapter:
        outbox = Outbox(store, {"telegram": adapter}, retry=RetryPolicy(base_seconds=0.1))
        await run_outbox(outbox, lambda: outbox.sent == 1)
    assert len(tg.sent) == 1 and len(tg.calls_to("sendMessage")) == 2


async def test_error_mapping(tg: FakeTelegram, settings: Settings, store: Store) -> None:
    notice = Digest((), generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    async with running(tg, settings, store) as adapter:
        tg.script(
            "sendMessage",
            FakeError.too_many_requests(3),
            FakeError.blocked(),
            FakeError.migrated(-100777),
            FakeError(400, "Bad Request: message thread not found"),
            FakeError(400, "Bad Request: can't parse entities"),
        )
        errors = []
        for _ in range(5):
            with pytest.raises(DeliveryError) as caught:
                await adapter.send(tg_chat(USER), notice)
            errors.append(caught.value)
    flood, blocked, migrated, topic_gone, malformed = errors
    assert flood.retry_after == 3 and not flood.permanent
    assert blocked.chat_gone
    assert migrated.migrated_to == "-100777"
    assert topic_gone.chat_gone
    assert malformed.permanent and not malformed.chat_gone


async def test_polling_conflict_is_logged_once(
    tg: FakeTelegram, settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    tg.script("getUpdates", FakeError.conflict(), FakeError.conflict())
    with caplog.at_level(logging.DEBUG, logger="bot.chat.telegram"):
        async with running(tg, settings, store):
            await tg.wait_for(lambda: not tg.pending_script, timeout=10)
            tg.push_message(USER, "/help")
            await tg.wait_for_sent(1, timeout=10)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "another newsbot instance or another program polls this bot token" in warnings[0].message


# --- webhook ---------------------------------------------------------------------------------


async def test_webhook_checks_the_secret_token(
    tg: FakeTelegram, settings: Settings, store: Store
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    config = TelegramSettings(
        api_url=tg.base_url, mode="webhook", webhook_url=url, webhook_port=port
    )
    async with running(tg, settings, store, telegram=config) as adapter:
        assert tg.webhook is not None and tg.webhook["url"] == url
        secret = tg.webhook["secret_token"]
        assert secret == adapter.webhook_secret and len(secret) >= 32
        forged = tg.make_update(message=tg.user_message(USER, "/subscribe"))
        assert await tg.deliver_webhook(url, forged) == 403
        assert await tg.deliver_webhook(url, forged, secret_token="wrong") == 403
        real = tg.make_update(message=tg.user_message(USER, "/help"))
        assert await tg.deliver_webhook(url, real, secret_token=secret) == 200
        [reply] = await tg.wait_for_sent(1)
    assert "/subscribe" in reply.visible_text
    assert await store.subscription(tg_chat(USER)) is None  # the forged update did nothing
    assert tg.calls_to("getUpdates") == []


# --- end to end ------------------------------------------------------------------------------


async def test_service_end_to_end(settings: Settings) -> None:
    """/start, an alert from a dropped file, a reply to it answered from that article."""
    async with FakeTelegram(token=TOKEN) as fake:  # with Telegram's flood control
        config = settings.model_copy(update={"telegram": TelegramSettings(api_url=fake.base_url)})
        stop = asyncio.Event()
        adapter = TelegramChat(TOKEN, config.telegram, commands=commands.infos(), poll_timeout=1.0)
        service = asyncio.create_task(app.run(config, adapters=[adapter], stop=stop))
        try:
            await fake.wait_for_calls("getUpdates", 1, timeout=10)
            fake.push_message(USER, "/start")
            [welcome] = await fake.wait_for_sent(1, timeout=10)
            shutil.copy(SEED, config.articles.folder)
            _, alert = await fake.wait_for_sent(2, timeout=10)
            fake.push_message(USER, "who attends from Germany?", reply_to=alert.message_id)
            _, _, answer = await fake.wait_for_sent(3, timeout=10)
        finally:
            stop.set()
            code = await service
    assert "Subscribed" in welcome.visible_text
    assert alert.visible_text.startswith("🚨 Alert") and alert.reply_markup is not None
    assert "Michaelis" in answer.visible_text
    assert answer.reply_to_message_id is not None
    assert code == 0


async def test_newsbot_run_with_token_and_api_url_from_the_environment(settings: Settings) -> None:
    """The issue's acceptance: the real `newsbot run` process, configured only by environment."""
    import os
    import signal
    import sys

    async with FakeTelegram(token=TOKEN) as fake:
        env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "NEWSBOT_TELEGRAM_API_URL": fake.base_url,
            "NEWSBOT_ARTICLES": str(settings.articles.folder),
            "NEWSBOT_DATA_DIR": str(settings.storage.data_dir),
            "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        }
        env.pop("NEWSBOT_DATABASE_URL", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            # Queued until the bot's first long poll fetches it.
            fake.push_message(USER, "/start")
            [welcome] = await fake.wait_for_sent(1, timeout=30)
            shutil.copy(SEED, settings.articles.folder)
            _, alert = await fake.wait_for_sent(2, timeout=15)
            fake.push_message(USER, "who attends from Germany?", reply_to=alert.message_id)
            _, _, answer = await fake.wait_for_sent(3, timeout=15)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 20)
    assert "Subscribed" in welcome.visible_text
    assert alert.visible_text.startswith("🚨 Alert")
    assert "Michaelis" in answer.visible_text
    assert code == 0
    assert TOKEN not in "".join(call.method for call in fake.calls)


# --- helpers ---------------------------------------------------------------------------------


async def _alert(store: Store, article: Article) -> Alert:
    from bot import digest

    [(stored, verdict)] = await store.entries([article.id])
    return Alert(digest.item(stored, verdict))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.reliability
async def test_replies_share_the_per_chat_pace_with_alerts(settings: Settings) -> None:
    """Issue 10: an alert, an answer and command replies at once to one chat draw no 429."""
    async with FakeTelegram(token=TOKEN) as fake:  # with Telegram's per-chat flood control
        config = settings.model_copy(update={"telegram": TelegramSettings(api_url=fake.base_url)})
        pacing = app.ReplyPacing()
        adapter = TelegramChat(
            TOKEN, config.telegram, commands=commands.infos(), poll_timeout=1.0, pace=pacing
        )
        stop = asyncio.Event()
        service = asyncio.create_task(app.run(config, adapters=[adapter], stop=stop, pacing=pacing))
        try:
            await fake.wait_for_calls("getUpdates", 1, timeout=10)
            fake.push_message(USER, "/start")
            await fake.wait_for_sent(1, timeout=10)
            shutil.copy(SEED, config.articles.folder)
            _, alert = await fake.wait_for_sent(2, timeout=10)
            fake.push_message(USER, "who attends from Germany?", reply_to=alert.message_id)
            for text in ("/settings", "/help", "/digest"):
                fake.push_message(USER, text)
            sent = await fake.wait_for_sent(6, timeout=20)
        finally:
            stop.set()
            code = await service
    assert code == 0
    assert fake.rejected_429 == 0
    assert "Michaelis" in sent[2].visible_text
