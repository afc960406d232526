"""Secrets and chat ids never reach the log: the filter itself, and the real `newsbot run -vv`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import pytest

from bot import logs
from bot.config import Settings
from bot.store import Store

from .conftest import ROOT, database_env, only
from .fake_telegram import FakeTelegram, RateLimits

TOKEN = "123456:AAH-secret-token-value_0123456789"
CHAT_ID = 987654321


def service_env(settings: Settings, api_url: str, token: str = TOKEN) -> dict[str, str]:
    """The environment of a real `newsbot run` against the fake Bot API."""
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": token,
        "NEWSBOT_TELEGRAM_API_URL": api_url,
        "NEWSBOT_ARTICLES": str(settings.articles.folder),
        "NEWSBOT_DATA_DIR": str(settings.storage.data_dir),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "COLUMNS": "200",
    }
    env.pop("NEWSBOT_DATABASE_URL", None)
    return env | database_env(settings)


def test_redactor_hides_secrets_in_message_args_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "SLACK_BOT_TOKEN": "xoxb-1-2-3"}
    logs.install(logs.Redactor(logs.known_secrets(env)))
    handler.addFilter(logs.Redactor(logs.known_secrets(env)))
    try:
        logger.warning("url %s", f"https://api.telegram.org/bot{TOKEN}/getMe")
        logger.warning("slack xoxb-1-2-3 and %r", {"t": "bot" + TOKEN.replace(":", "%3A")})
        try:
            raise ValueError(f"The token `{TOKEN}` was rejected by the server.")
        except ValueError:
            logger.exception("start failed")
    finally:
        logger.removeHandler(handler)
        sys.excepthook = sys.__excepthook__
    text = stream.getvalue()
    assert TOKEN not in text and "xoxb-1-2-3" not in text and "%3A" not in text
    assert text.count(logs.REDACTED) == 4
    assert "ValueError: The token `[redacted]` was rejected" in text


def test_json_lines_carry_fields_and_stay_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.Redactor([TOKEN]))
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("delivery %d sent", 7, extra={"delivery_id": 7, "chat": "42"})
        try:
            raise ValueError(f"The token `{TOKEN}` was rejected by the server.")
        except ValueError:
            logger.exception("start failed", extra={"detail": f"bot{TOKEN}/getMe"})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    first, second = (json.loads(line) for line in text.splitlines())
    assert set(first) == {"time", "level", "logger", "message", "delivery_id", "chat"}
    assert first["level"] == "WARNING" and first["logger"] == "tests.json"
    assert first["message"] == "delivery 7 sent"
    assert (first["delivery_id"], first["chat"]) == (7, "42")
    assert first["time"].endswith("+00:00")
    # The token was in the exception's text and in a field: neither reaches the line.
    assert TOKEN not in text
    assert second["detail"] == f"bot{logs.REDACTED}/getMe"
    assert second["traceback"].endswith(
        "ValueError: The token `[redacted]` was rejected by the server."
    )


@pytest.mark.reliability
async def test_newsbot_run_at_vv_logs_neither_the_token_nor_chat_ids(settings: Settings) -> None:
    """Issue 11 #16 and checklist 24: the real process at -vv, against the loopback Bot API."""
    async with FakeTelegram(token=TOKEN, rate_limits=RateLimits(enabled=False)) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-vv",
            "run",
            env=service_env(settings, fake.base_url),
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            fake.push_message(CHAT_ID, "/start")
            fake.push_message(CHAT_ID, "who attends from Germany?")
            await fake.wait_for_sent(2, timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 20)
    log = stderr.decode()
    assert process.returncode == 0, log
    # Debug logging was on (httpx's request lines carry the token in their URLs) ...
    assert "HTTP Request: POST" in log and logs.REDACTED in log
    # ... and neither the token, nor its bot-id-less half, nor the chat id got through.
    assert TOKEN not in log and TOKEN.split(":")[1] not in log
    assert str(CHAT_ID) not in log


@pytest.mark.reliability
async def test_rejected_token_is_one_line_and_exit_2(settings: Settings) -> None:
    """Issue 11 #16: today a 40-line traceback ending in the token itself."""
    async with FakeTelegram(token="999:the-only-valid-token") as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-vv",
            "run",
            env=service_env(settings, fake.base_url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    log = stderr.decode()
    assert process.returncode == 2, log
    assert TOKEN not in log and TOKEN.split(":")[1] not in log
    errors = [line for line in log.splitlines() if "error:" in line]
    assert errors == [
        "error: Telegram rejected the bot token: check TELEGRAM_BOT_TOKEN (from @BotFather)"
    ]
    assert "Traceback" not in log


@pytest.mark.reliability
async def test_database_errors_do_not_carry_chat_ids(store: Store) -> None:
    """Checklist 24: SQLAlchemy puts a failed statement's parameters into the error text,
    which the Outbox and jobs log (e.g. a migration clash on a chat id)."""
    import sqlalchemy as sa
    import sqlalchemy.exc

    from bot.models import ChatRef
    from bot.schema import subscriptions

    await store.subscriptions.subscribe(ChatRef("telegram", str(CHAT_ID)), "en")
    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught:
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(subscriptions).values(
                    platform="telegram",
                    chat_id=str(CHAT_ID),
                    thread_id="",
                    created_at=sa.func.now(),
                )
            )
    # The text and the whole traceback, as a log line carries it (PostgreSQL's DETAIL quotes
    # the row's key in the driver's error beneath).
    logged = "".join(traceback.format_exception(caught.value))
    assert "unique" in str(caught.value).lower() and "IntegrityError" in logged
    assert str(CHAT_ID) not in logged


def test_safe_url_drops_credentials_and_query_values() -> None:
    from bot.logs import safe_url

    assert (
        safe_url("https://reader:hunter2@news.example:8443/rss?apikey=TOP&lang=de&flag#x")
        == "https://news.example:8443/rss?apikey=***&lang=***&***"
    )
    # Third review: a bare query word was printed whole.
    assert safe_url("https://news.example/rss?SECRETONLY") == "https://news.example/rss?***"
    masked = logs.Redactor([]).redact("fetch https://news.example/rss?K9SECRET failed")
    assert masked == "fetch https://news.example/rss?*** failed"
    assert safe_url("https://news.example/rss") == "https://news.example/rss"
    assert safe_url("articles/seed.txt") == "articles/seed.txt"


def test_a_secret_is_redacted_in_every_percent_encoded_form() -> None:
    """httpx logged `bot123:ab%20cd%C3%A9#x/getMe`: quoted, but not the way quote() quotes."""
    token = "123:ab cdé#x"
    redactor = logs.Redactor(logs.known_secrets({"TELEGRAM_BOT_TOKEN": token}))
    seen = [
        "POST http://127.0.0.1:18080/bot123:ab%20cd%C3%A9#x/getMe",
        "POST http://127.0.0.1:18080/bot123%3Aab%20cd%c3%a9%23x/getMe",
        "form token=123%3Aab+cd%C3%A9%23x&x=1",
        '{"token": "123:ab cd\\u00e9#x"}',
        f"plain {token}.",
    ]
    for line in seen:
        redacted = redactor.redact(line)
        assert redacted.count(logs.REDACTED) == 1, redacted
        assert "ab" not in redacted.replace("[redacted]", ""), redacted
    assert redactor.redact("123:ab cd and 123:ab") == "123:ab cd and 123:ab"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_percent_encoded_token_is_redacted_in_text_and_json_lines(log_format: str) -> None:
    token = "123:ab cdé#x"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.Redactor(logs.known_secrets({"TELEGRAM_BOT_TOKEN": token})))
    logger = logging.getLogger("tests.encoded")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        url = "http://127.0.0.1:18080/bot123:ab%20cd%C3%A9#x/getMe"
        logger.warning('HTTP Request: POST %s "HTTP/1.1 200 OK"', url)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "cd%C3%A9" not in text and "bot[redacted]/getMe" in text, text


@pytest.mark.reliability
@pytest.mark.parametrize("log_format", ["text", "json"])
@only("sqlite", "log lines, not the store")
async def test_a_feed_urls_query_is_masked_in_every_line_at_vv(
    settings: Settings, tmp_path: Path, log_format: str
) -> None:
    """Review defect 4: httpx's `HTTP Request: GET …?apikey=KEY123` line printed it at -vv."""
    from .feedserver import FeedServer

    server = FeedServer()
    async with server.serving(["127.0.0.1"]) as ports:
        path = "/feed.xml?apikey=KEY123&lang=de"
        server.behaviours[path] = "fail"  # the failure is logged too, with the URL
        config = tmp_path / "c.toml"
        config.write_text(
            "[sources]\nallow_private = true\n"
            f'feeds = [{{ url = "http://127.0.0.1:{ports["127.0.0.1"]}{path}" }}]\n'
        )
        env = service_env(settings, "unused") | {
            "NEWSBOT_CONFIG": str(config),
            "NEWSBOT_LOG_FORMAT": log_format,
        }
        del env["TELEGRAM_BOT_TOKEN"], env["NEWSBOT_TELEGRAM_API_URL"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-vv",
            "run",
            env=env,
            stdin=asyncio.subprocess.PIPE,  # the console stays up until this closes
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(60):  # up to httpx's line for the feed's request
                while True:
                    line = await process.stderr.readline()
                    assert line, b"".join(lines)
                    lines.append(line)
                    if b"HTTP Request: GET" in line and b"feed.xml" in line:
                        break
        finally:
            process.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(process.communicate(), 20)
    log = b"".join(lines).decode() + rest.decode()
    assert server.requests[path] >= 1
    assert process.returncode == 0, log
    assert "HTTP Request: GET" in log and "apikey=***&lang=***" in log
    assert "KEY123" not in log
