import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import app, qa
from bot.config import Settings
from bot.models import Alert, ChatRef, Limits, Post, Sent
from bot.outbox import Outbox
from bot.store import Store, Subscription

from .conftest import SEED

CHAT = ChatRef("console", "local")


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


class RecordingChat:
    platform = "console"
    limits = Limits(per_second=1000.0)

    def __init__(self) -> None:
        self.sent: list[tuple[ChatRef, Post]] = []

    async def start(self, handler: object) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post) -> Sent:
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


def test_build_adapters_follows_the_environment(settings: Settings) -> None:
    from bot.chat.slack import SlackChat
    from bot.chat.telegram import TelegramChat
    from bot.config import Secrets

    def with_secrets(**values: str) -> Settings:
        return settings.model_copy(update={"secrets": Secrets.model_validate(values)})

    assert app.build_adapters(with_secrets()) == []
    [only_slack] = app.build_adapters(
        with_secrets(slack_bot_token="xoxb-1", slack_signing_secret="s")
    )
    assert isinstance(only_slack, SlackChat)
    both = app.build_adapters(with_secrets(telegram_bot_token="1:A", slack_bot_token="xoxb-1"))
    assert [type(a) for a in both] == [TelegramChat, SlackChat]


@pytest.mark.reliability
async def test_a_change_resyncs_only_its_own_job(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 19: a command re-syncs one job, not all 2,000 chats' jobs."""
    import httpx
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.conversation import Change

    from .fakes import FakeChat

    chats = [ChatRef("telegram", str(n)) for n in range(2000)]
    for chat in chats:
        await store.subscribe(chat, "en", settings.digest.preferences())
    scheduler = AsyncIOScheduler()
    outbox = Outbox(store, {"telegram": FakeChat()})
    async with httpx.AsyncClient() as client:
        jobs = app.Jobs(scheduler, store, settings, client, qa.Index.build([]), outbox)
        await jobs.sync()
        assert len(scheduler.get_jobs()) == 2000
        full_reads = 0
        real = store.subscriptions

        async def counting(platform: str | None = None) -> list[Subscription]:
            nonlocal full_reads
            full_reads += 1
            return await real(platform)

        monkeypatch.setattr(store, "subscriptions", counting)
        added: list[str] = []
        real_add = scheduler.add_job

        def recording(*args: Any, **kwargs: Any) -> Any:
            added.append(kwargs["id"])
            return real_add(*args, **kwargs)

        monkeypatch.setattr(scheduler, "add_job", recording)
        await store.unsubscribe(chats[7])
        await jobs.changed(Change(chat=chats[7]))
        await store.add_source("https://news.example/rss", added_by="telegram:1")
        [feed] = await store.sources()
        await jobs.changed(Change(source_id=feed.id))
        assert scheduler.get_job(f"feed-{feed.id}") is not None
        await store.remove_source(feed.id)
        await jobs.changed(Change(source_id=feed.id))
    assert full_reads == 0
    assert added == [f"feed-{feed.id}"]
    assert len(scheduler.get_jobs()) == 1999
    assert scheduler.get_job(f"feed-{feed.id}") is None
