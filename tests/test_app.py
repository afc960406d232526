import asyncio
import io
import os
import shutil
import sys
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import app, qa
from bot.chat import DeliveryError
from bot.config import Settings
from bot.models import Alert, Article, ChatRef, Level, Post, Preferences, Sent, Verdict
from bot.outbox import Outbox
from bot.store import Store

from .conftest import ROOT, SEED

CHAT = ChatRef("console", "local")


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


class RecordingChat:
    platform = "console"

    def __init__(self) -> None:
        self.sent: list[tuple[ChatRef, Post]] = []

    async def start(self, handler: object) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        self.sent.append((chat, post))
        return Sent(("1",))


async def test_console_run_prints_digest_answers_and_exits_zero(settings: Settings) -> None:
    shutil.copy(SEED, settings.articles.folder)
    out = io.StringIO()
    code = await app.run(settings, lines=lines("who attends from Germany?\n", "/help\n"), out=out)
    text = out.getvalue()
    assert code == 0
    assert text.index("Conflict digest") < text.index("Michaelis") < text.index("/subscribe")
    assert "Source:" in text


async def test_folder_scan_ingests_new_files_once_and_alerts(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    folder = settings.articles.folder
    chat = RecordingChat()
    await store.subscribe(CHAT, "en")
    outbox = Outbox(store, {"console": chat})
    index = qa.Index.build([])
    mtimes: dict[Path, float] = {}
    await app.scan_folder(folder, store, settings, index, outbox, mtimes)
    assert await store.count_articles() == 0
    shutil.copy(SEED, folder)
    await app.scan_folder(folder, store, settings, index, outbox, mtimes)
    await app.scan_folder(folder, store, settings, index, outbox, mtimes)
    await outbox.drain()
    assert await store.count_articles() == 1
    alerts = [post for _, post in chat.sent if isinstance(post, Alert)]
    assert len(alerts) == 1 and alerts[0].item.title.startswith("Vertreter der 30 Nato-Staaten")
    assert index.get(alerts[0].item.article_id) is not None
    [row] = await store.deliveries("sent")
    assert row["latency_ms"] is not None and row["latency_ms"] >= 0


class SlowToStart:
    """An adapter that takes a while to connect and to disconnect, and counts sends outside."""

    # Telegram's pacing (29.5 msg/s): the 40 alerts take over a second, so a stop lands mid-way.
    platform = "telegram"

    def __init__(self, store: Store, stop_after: int, stop: asyncio.Event) -> None:
        self.store, self.stop_after, self.stop_event = store, stop_after, stop
        self.up = False
        self.sent: list[str] = []
        self.outside = 0

    async def _busy(self) -> None:
        # Real database round trips: time in which an outbox already running would send.
        for _ in range(40):
            await self.store.count_articles()

    async def start(self, handler: object) -> None:
        await self._busy()
        self.up = True

    async def stop(self) -> None:
        self.up = False
        await self._busy()

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        if not self.up:
            self.outside += 1
            raise DeliveryError("adapter is not started")
        self.sent.append(chat.chat_id)
        if len(self.sent) == self.stop_after:
            self.stop_event.set()
        return Sent((str(len(self.sent)),))


@pytest.mark.reliability
async def test_outbox_runs_only_while_the_adapters_are_up(settings: Settings) -> None:
    chats = [ChatRef("telegram", f"c{n:02}") for n in range(40)]
    async with Store.open(settings.storage.url()) as store:
        await store.add_articles([Article("a1", "Troops shell the city", "Fighting.", "en")])
        await store.save_verdicts([Verdict("a1", True, 0.9, (), Level.ALERT, ())])
        for chat in chats:
            await store.subscribe(chat, "en", Preferences(digest_at=None))
            await store.enqueue(chat, "alert", "a1", {"article_id": "a1", "lang": "en"})
        # Stopped after 10 alerts, then started again until all are out.
        stop = asyncio.Event()
        first = SlowToStart(store, 10, stop)
        assert await app.run(settings, adapters=[first], stop=stop) == 0
        assert first.outside == 0  # nothing tried before start or after stop
        assert 10 <= len(first.sent) < 40
        stop = asyncio.Event()
        second = SlowToStart(store, 40 - len(first.sent), stop)
        assert await app.run(settings, adapters=[second], stop=stop) == 0
        assert second.outside == 0
        received = first.sent + second.sent
        rows = await store.deliveries()
    assert sorted(received) == [c.chat_id for c in chats]  # each once
    # No attempt was charged for the adapter being down: every row sent on its first attempt.
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}


@pytest.mark.reliability
async def test_a_second_instance_on_one_sqlite_file_refuses_to_start(settings: Settings) -> None:
    env = {
        **os.environ,
        "NEWSBOT_ARTICLES": str(settings.articles.folder),
        "NEWSBOT_DATA_DIR": str(settings.storage.data_dir),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
    }
    for name in ("NEWSBOT_DATABASE_URL", "TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN"):
        env.pop(name, None)
    run = (sys.executable, "-m", "bot", "run")
    first = await asyncio.create_subprocess_exec(
        *run, env=env, stdin=PIPE, stdout=PIPE, stderr=PIPE, cwd=str(ROOT)
    )
    try:
        assert first.stdout is not None and first.stdin is not None
        # The console prints the digest once it is up (and holds the lock).
        assert await asyncio.wait_for(first.stdout.readline(), 60)
        second = await asyncio.create_subprocess_exec(
            *run, env=env, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, cwd=str(ROOT)
        )
        out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "another newsbot is already running" in lines[0], lines
        assert out == b""
        first.stdin.close()  # end of console input: the first one exits as usual
        assert await asyncio.wait_for(first.wait(), 60) == 0
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    # The lock went with the process.
    with app.single_instance(settings.storage.url()):
        pass
