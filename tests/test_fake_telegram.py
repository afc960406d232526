"""The fake Telegram Bot API behaves like Telegram, as seen through the real PTB 22 stack."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web
from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)

from tests.fake_telegram import (
    DropConnection,
    FakeDelay,
    FakeError,
    FakeTelegram,
    HtmlParseError,
    RateLimits,
    VirtualClock,
    parse_html,
    utf16_len,
)

TOKEN = "123456:ABC-fake"


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # PTB 22.2+ warns (PTBDeprecationWarning) on reading RetryAfter.retry_after as int unless
    # PTB_TIMEDELTA opts in to timedelta values; the adapter should opt in the same way.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def tg(clock: VirtualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, clock=clock) as fake:
        yield fake


@pytest.fixture(params=["http", "in_process"])
def build_app(request: pytest.FixtureRequest, tg: FakeTelegram) -> Callable[[], Application]:  # type: ignore[type-arg]
    """Builds Applications talking to the fake over loopback HTTP or in-process."""
    return lambda: _application(tg, in_process=request.param == "in_process")


@pytest.fixture
async def bot(build_app: Callable[[], Application]) -> AsyncIterator[ExtBot[None]]:  # type: ignore[type-arg]
    async with build_app() as application:
        yield application.bot


def _application(tg: FakeTelegram, *, in_process: bool = False) -> Application:  # type: ignore[type-arg]
    builder = ApplicationBuilder().token(TOKEN)
    if in_process:
        builder = builder.request(tg.request()).get_updates_request(tg.request())
    else:
        builder = builder.base_url(tg.base_url).base_file_url(tg.base_file_url)
    return builder.build()


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("<b>Welcome</b> to the news bot", parse_mode="HTML")


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_message.text is not None
    await update.effective_message.reply_text(update.effective_message.text)


# --------------------------------------------------------------------------- polling app


async def test_polling_application_answers_commands_and_echoes(
    tg: FakeTelegram,
    clock: VirtualClock,
    build_app: Callable[[], Application],  # type: ignore[type-arg]
) -> None:
    application = build_app()
    application.add_handler(CommandHandler("start", _start))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)  # type: ignore[union-attr]
        try:
            tg.push_message(42, "/start", language_code="de")
            [welcome] = await tg.wait_for_sent(1)
            clock.advance(1.0)  # the per-chat limit is 1 message/s
            tg.push_message(42, "Grüße 😀 <&>")
            _, echo = await tg.wait_for_sent(2)
        finally:
            await application.updater.stop()  # type: ignore[union-attr]
            await application.stop()

    assert (welcome.chat_id, welcome.text, welcome.parse_mode) == (
        42,
        "<b>Welcome</b> to the news bot",
        "HTML",
    )
    assert welcome.visible_text == "Welcome to the news bot"
    assert (echo.chat_id, echo.text, echo.parse_mode) == (42, "Grüße 😀 <&>", None)
    methods = [c.method for c in tg.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"]  # initialize(), then polling bootstrap
    polls = tg.calls_to("getUpdates")
    assert polls[0].params["timeout"] == 1
    # PTB posts form-encoded bodies (non-strings JSON-encoded); calls without parameters
    # (getMe, deleteWebhook) have no body at all.
    assert {c.content_type for c in tg.calls if c.params} == {"application/x-www-form-urlencoded"}
    assert {c.method for c in tg.calls if not c.params} == {"getMe", "deleteWebhook"}
    assert tg.rejected_429 == 0 and tg.unhandled == []


async def test_group_commands_and_forum_topics(
    tg: FakeTelegram,
    build_app: Callable[[], Application],  # type: ignore[type-arg]
) -> None:
    forum = -1001234567890
    application = build_app()
    application.add_handler(CommandHandler("start", _start))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)  # type: ignore[union-attr]
        try:
            # Updates are handled in order, so the echo proves the foreign command was ignored.
            tg.push_message(-555, "/start@SomeOtherBot")
            tg.push_message(-555, "/start@FakeNewsBot")
            tg.push_message(forum, "news?", chat_type="supergroup", thread_id=7)
            welcome, reply = await tg.wait_for_sent(2)
        finally:
            await application.updater.stop()  # type: ignore[union-attr]
            await application.stop()
    assert (welcome.chat_id, welcome.visible_text) == (-555, "Welcome to the news bot")
    assert (reply.chat_id, reply.text) == (forum, "news?")
    assert reply.message_thread_id == 7  # PTB's reply_text keeps the topic
    assert tg.messages[(forum, reply.message_id)]["is_topic_message"] is True
    assert tg.chats[forum]["is_forum"] is True


async def test_callback_query_round_trip(
    tg: FakeTelegram,
    clock: VirtualClock,
    build_app: Callable[[], Application],  # type: ignore[type-arg]
) -> None:
    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Subscribed")
        await query.edit_message_text(f"You chose {query.data}")

    application = build_app()
    application.add_handler(CallbackQueryHandler(on_button))
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)  # type: ignore[union-attr]
        try:
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Daily", callback_data="d")]])
            message = await application.bot.send_message(42, "Digest?", reply_markup=keyboard)
            assert message.reply_markup == keyboard  # inline markup is echoed
            clock.advance(1.0)
            update = tg.push_callback_query(42, message.message_id, "d")
            await tg.wait_for_sent(2)
        finally:
            await application.updater.stop()  # type: ignore[union-attr]
            await application.stop()

    query_id = update["callback_query"]["id"]
    assert tg.callback_answers[query_id]["text"] == "Subscribed"
    edit = tg.sent[-1]
    assert (edit.method, edit.message_id, edit.visible_text) == (
        "editMessageText",
        message.message_id,
        "You chose d",
    )
    assert tg.messages[(42, message.message_id)]["text"] == "You chose d"


# --------------------------------------------------------------------------- errors


async def test_scripted_429_raises_retry_after_then_holds_a_flood_wait(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    tg.script("sendMessage", FakeError.too_many_requests(5))
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(42, "digest part 1")
    assert caught.value.retry_after == dt.timedelta(seconds=5)
    assert tg.sent == []

    clock.advance(3)
    with pytest.raises(RetryAfter) as caught:  # still inside the flood wait, any chat
        await bot.send_message(43, "digest part 1")
    assert caught.value.retry_after == dt.timedelta(seconds=2)

    clock.advance(2)
    await bot.send_message(42, "digest part 1")
    assert [s.chat_id for s in tg.sent] == [42]
    assert tg.rejected_429 == 2
    assert [(r.kind, r.chat_id) for r in tg.rejections] == [("scripted", 42), ("flood_wait", 43)]


async def test_blocked_user_raises_forbidden_until_they_write_again(
    tg: FakeTelegram, bot: ExtBot[None]
) -> None:
    tg.block(42)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(42, "alert")
    tg.push_message(42, "/start")  # a user writing to the bot has unblocked it
    await bot.send_message(42, "welcome back")

    tg.block(9, notify=True)  # also queues Telegram's my_chat_member update
    *_, update = await bot.get_updates(timeout=0)
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"

    tg.script("sendMessage", FakeError.blocked(), chat_id=7)
    await bot.send_message(8, "unaffected")
    with pytest.raises(Forbidden):
        await bot.send_message(7, "alert")
    assert [s.chat_id for s in tg.sent] == [42, 8]


async def test_migrated_group_raises_chat_migrated(tg: FakeTelegram, bot: ExtBot[None]) -> None:
    tg.migrate_chat(-4567, -1004567)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(-4567, "alert")
    assert caught.value.new_chat_id == -1004567
    message = await bot.send_message(caught.value.new_chat_id, "alert")
    assert message.chat.type == "supergroup"

    tg.script("sendMessage", FakeError.migrated(-100999))
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(-999, "alert")
    assert caught.value.new_chat_id == -100999


async def test_conflicts_on_get_updates(
    tg: FakeTelegram,
    bot: ExtBot[None],
    build_app: Callable[[], Application],  # type: ignore[type-arg]
) -> None:
    tg.script("getUpdates", FakeError.conflict())
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await bot.get_updates(timeout=0)

    # A second instance's poll ends the first one's long poll. (Two concurrent get_updates on
    # one Bot would not even leave PTB: its getUpdates connection pool holds one connection.)
    async with build_app() as second_instance:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await tg.wait_for(lambda: len(tg.calls_to("getUpdates")) == 2)
        assert await second_instance.bot.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first


async def test_webhook_blocks_get_updates_until_deleted(
    tg: FakeTelegram, bot: ExtBot[None]
) -> None:
    await bot.set_webhook("https://bot.example/telegram", secret_token="s3cret-token")
    info = await bot.get_webhook_info()
    assert info.url == "https://bot.example/telegram"
    with pytest.raises(Conflict, match="while webhook is active"):
        await bot.get_updates(timeout=0)
    assert tg.webhook is not None and tg.webhook["secret_token"] == "s3cret-token"
    await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == ()


async def test_slow_response_after_delivery_times_out_but_the_message_was_sent(
    tg: FakeTelegram, bot: ExtBot[None]
) -> None:
    tg.script("sendMessage", FakeDelay(1.0, delivered=True))
    with pytest.raises(TimedOut):
        await bot.send_message(42, "alert", read_timeout=0.2)
    assert [s.visible_text for s in tg.sent] == ["alert"]


async def test_dropped_connection_and_5xx_raise_network_error(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    tg.script("sendMessage", DropConnection(), FakeError.server_error(502))
    with pytest.raises(NetworkError, match="disconnected"):
        await bot.send_message(42, "alert")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(42, "alert")
    assert tg.sent == [] and tg.pending_script == []
    await bot.send_message(42, "alert")
    assert [c.status for c in tg.calls_to("sendMessage")] == [None, 502, 200]


async def test_wrong_token_is_invalid_token(tg: FakeTelegram) -> None:
    application = ApplicationBuilder().token("999:WRONG").base_url(tg.base_url).build()
    with pytest.raises(InvalidToken):
        async with application:
            pass
    # PTB 22 leaks here: a failed initialize() leaves the Application "not initialized", so its
    # shutdown() returns early and the bot's httpx pools stay open (ResourceWarning later).
    await application.bot.shutdown()
    assert tg.calls[-1].status == 401


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<p>news</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("AT&T", "Character entity expected"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
        ('<a href="https://x.example">x', "Can't find end tag"),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
async def test_bad_html_is_a_bad_request(bot: ExtBot[None], html: str, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(42, html, parse_mode="HTML")
    # PTB strips "Bad Request: " and str.capitalize()s the rest, lower-casing it all.
    assert caught.value.message.startswith("Can't parse entities: ")
    assert reason.lower() in caught.value.message


async def test_supported_html_becomes_entities(tg: FakeTelegram, bot: ExtBot[None]) -> None:
    html = (
        "<b>Alert</b> 😀 <i>it</i> <u>u</u> <s>s</s> <tg-spoiler>x</tg-spoiler> "
        '<a href="https://e.example/?a=1&amp;b=2">link</a> <code>c</code> '
        '<pre><code class="language-python">p</code></pre> <blockquote expandable>q</blockquote> '
        "&lt;tag&gt; &quot;q&quot; &#8364; &#x20AC; a > b"
    )
    message = await bot.send_message(42, html, parse_mode="HTML")
    assert message.text is not None and message.text.endswith('<tag> "q" € € a > b')
    kinds = [(e.type, message.parse_entity(e)) for e in message.entities]
    assert kinds == [
        ("bold", "Alert"),
        ("italic", "it"),
        ("underline", "u"),
        ("strikethrough", "s"),
        ("spoiler", "x"),
        ("text_link", "link"),
        ("code", "c"),
        ("pre", "p"),
        ("expandable_blockquote", "q"),
    ]
    assert message.entities[5].url == "https://e.example/?a=1&b=2"
    assert message.entities[7].language == "python"


async def test_message_length_counts_utf16_units_of_the_visible_text(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    too_long = "a" * 4095 + "😀"  # the astral emoji counts 2 units: 4,097
    assert utf16_len(too_long) == 4097
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(42, too_long)

    for chat_id, text, parse_mode in [
        (1, "a" * 4094 + "😀", None),  # exactly 4,096
        (2, "<b>" + "a" * 4096 + "</b>", "HTML"),  # tags are not counted
        (3, "&amp;" * 4096, "HTML"),  # entities count as the character they stand for
        (4, "  " + "a" * 4096 + "\n", None),  # surrounding whitespace is trimmed
    ]:
        await bot.send_message(chat_id, text, parse_mode=parse_mode)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(5, "<i>" + "&lt;" * 4097 + "</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(6, " \n ")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(6, "<b> </b>", parse_mode="HTML")
    assert len(tg.sent) == 4


# --------------------------------------------------------------------------- flood control


async def test_per_chat_limit_is_one_message_per_second(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    await bot.send_message(42, "one")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(42, "two")
    assert caught.value.retry_after == dt.timedelta(seconds=1)
    await bot.send_message(43, "another chat is fine")
    clock.advance(0.5)
    with pytest.raises(RetryAfter):
        await bot.send_message(42, "two")
    clock.advance(0.5)
    await bot.send_message(42, "two")
    assert [s.time - tg.sent[0].time for s in tg.sent] == [0, 0, 1.0]
    assert tg.rejected_429 == 2
    assert tg.rejected_kinds == {"per_chat": 2}
    assert [r.time - tg.sent[0].time for r in tg.rejections] == [0, 0.5]


async def test_global_limit_is_thirty_messages_per_second(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    await asyncio.gather(*(bot.send_message(chat_id, "alert") for chat_id in range(1, 31)))
    with pytest.raises(RetryAfter):
        await bot.send_message(31, "alert")
    clock.advance(1.0)
    await bot.send_message(31, "alert")
    assert len(tg.sent) == 31 and tg.rejected_429 == 1
    [rejection] = tg.rejections
    assert (rejection.kind, rejection.chat_id, rejection.in_window) == ("global", 31, 30)


async def test_group_limit_is_twenty_messages_per_minute(
    tg: FakeTelegram, bot: ExtBot[None], clock: VirtualClock
) -> None:
    for _ in range(20):
        await bot.send_message(-555, "alert")
        clock.advance(1.0)
    with pytest.raises(RetryAfter) as caught:  # at t+20 s; the first send frees at t+60 s
        await bot.send_message(-555, "alert")
    assert caught.value.retry_after == dt.timedelta(seconds=40)
    assert tg.rejected_kinds == {"group": 1}
    clock.advance(40)
    await bot.send_message(-555, "alert")


async def test_limits_can_be_switched_off() -> None:
    async with (
        FakeTelegram(token=TOKEN, rate_limits=RateLimits(enabled=False)) as tg,
        _application(tg) as application,
    ):
        for _ in range(3):
            await application.bot.send_message(42, "alert")
    assert len(tg.sent) == 3


# --------------------------------------------------------------------------- other methods


async def test_commands_are_stored_per_language_and_scope(
    tg: FakeTelegram, bot: ExtBot[None]
) -> None:
    await bot.set_my_commands([BotCommand("start", "Subscribe"), BotCommand("digest", "Digest")])
    await bot.set_my_commands(
        [BotCommand("start", "Abonnieren"), BotCommand("digest", "Übersicht")], language_code="de"
    )
    await bot.set_my_commands(
        [BotCommand("addfeed", "Add a feed")], scope=BotCommandScopeAllGroupChats()
    )
    assert [c.description for c in await bot.get_my_commands(language_code="de")] == [
        "Abonnieren",
        "Übersicht",
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "digest"]
    assert await bot.get_my_commands(language_code="fr") == ()
    assert tg.my_commands("", {"type": "all_group_chats"}) == [
        {"command": "addfeed", "description": "Add a feed"}
    ]
    with pytest.raises(BadRequest):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])


async def test_chat_member_status_follows_set_admins(tg: FakeTelegram, bot: ExtBot[None]) -> None:
    tg.set_admins(-100777, [11, 12], creator=10)
    assert isinstance(await bot.get_chat_member(-100777, 10), ChatMemberOwner)
    admin = await bot.get_chat_member(-100777, 11)
    assert isinstance(admin, ChatMemberAdministrator) and admin.status == "administrator"
    member = await bot.get_chat_member(-100777, 99)
    assert isinstance(member, ChatMemberMember) and member.status == "member"
    assert {m.user.id for m in await bot.get_chat_administrators(-100777)} == {10, 11, 12}
    chat = await bot.get_chat(-100777)
    assert chat.type == "supergroup"


async def test_get_updates_offsets_and_long_polling(tg: FakeTelegram, bot: ExtBot[None]) -> None:
    first = tg.push_message(42, "one")
    tg.push_message(43, "two", chat_type="private")
    tg.push_update(callback_query=tg.callback_query(42, 1, "x"))
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [first["update_id"] + i for i in range(3)]
    assert updates[0].message is not None and updates[0].message.text == "one"

    last = updates[-1].update_id
    assert await bot.get_updates(offset=last, timeout=0) != ()  # not yet confirmed
    assert await bot.get_updates(offset=last + 1, timeout=0) == ()  # confirmed, dropped

    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(offset=last + 1, timeout=10))
    await tg.wait_for(lambda: tg.calls[-1].method == "getUpdates")
    tg.push_message(42, "three")
    [update] = await poll
    assert update.message is not None and update.message.text == "three"
    assert loop.time() - started < 2  # returned as soon as the update arrived

    post = tg.push_message(-1009876, "channel news", chat_type="channel")
    assert await bot.get_updates(timeout=0, allowed_updates=["callback_query"]) != ()  # queued
    tg.push_message(42, "not wanted")  # created after allowed_updates excluded messages
    assert await bot.get_updates(offset=post["update_id"] + 1, timeout=0) == ()
    assert [u["message"]["text"] for u in tg.dropped_updates] == ["not wanted"]
    assert post["channel_post"]["sender_chat"]["type"] == "channel"


async def test_json_bodies_and_query_strings_are_accepted(tg: FakeTelegram) -> None:
    url = f"{tg.base_url}{TOKEN}"
    async with httpx.AsyncClient() as client:
        by_json = await client.post(
            f"{url}/sendmessage",  # method names are case-insensitive
            json={"chat_id": 42, "text": "hi", "reply_markup": {"inline_keyboard": []}},
        )
        by_query = await client.get(f"{url}/getMe")
        unknown = await client.post(f"{url}/sendSticker", json={"chat_id": 42})
    assert by_json.status_code == 200 and by_json.json()["result"]["text"] == "hi"
    assert by_query.json()["result"]["is_bot"] is True
    assert unknown.status_code == 404 and unknown.json() == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found",
    }
    assert tg.unhandled == ["sendSticker"]
    assert tg.calls[0].content_type == "application/json"


async def test_deliver_webhook_sends_the_secret_header(tg: FakeTelegram) -> None:
    seen: list[dict[str, object]] = []

    async def endpoint(request: web.Request) -> web.Response:
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != "s3cret":
            return web.Response(status=403)
        seen.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/telegram", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/telegram"
        update = tg.make_update(message=tg.user_message(42, "/start"))
        assert await tg.deliver_webhook(url, update) == 403
        assert await tg.deliver_webhook(url, update, secret_token="wrong") == 403
        assert await tg.deliver_webhook(url, update, secret_token="s3cret") == 200
    finally:
        await runner.cleanup()
    assert seen == [update]
    assert [status for _, _, status in tg.webhook_deliveries] == [403, 403, 200]


def test_parse_html_offsets_are_utf16() -> None:
    text, entities = parse_html("😀 <b>x😀</b>")
    assert text == "😀 x😀"
    assert entities == [{"type": "bold", "offset": 3, "length": 3}]
    assert parse_html("AT&T", strict=False) == ("AT&T", [])
    with pytest.raises(HtmlParseError, match="byte offset 5"):
        parse_html("😀 <x>")  # offsets in errors are UTF-8 bytes, as TDLib reports them
