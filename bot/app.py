"""Wire the service: store, HTTP client, scheduler and chat adapters, opened and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import __version__, jobs, qa
from bot.chat import ChatAdapter
from bot.chat.console import CHAT as CONSOLE_CHAT
from bot.chat.console import ConsoleChat
from bot.config import Settings
from bot.conversation import Conversation
from bot.learn import FeedbackModel
from bot.models import Alert, Level, Thresholds
from bot.store import Store

log = logging.getLogger(__name__)

USER_AGENT = f"newsbot/{__version__} (+https://github.com/newsbot/newsbot)"


def thresholds(settings: Settings) -> Thresholds:
    """The classifier thresholds from settings."""
    return Thresholds(settings.classifier.alert_threshold, settings.classifier.digest_threshold)


def feedback_model(settings: Settings) -> FeedbackModel | None:
    """The deployment's trained feedback model, when one is configured and present."""
    path = settings.classifier.feedback_model
    if path is None or not path.exists():
        return None
    return FeedbackModel.load(path)


def changed_since(folder: Path, mtimes: dict[Path, float]) -> list[Path]:
    """Files in `folder` whose modification time differs from the one recorded; records the new."""
    changed = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.name.startswith(".") or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
            if mtimes.get(path) != mtime:
                mtimes[path] = mtime
                changed.append(path)
    return changed


async def scan_folder(
    folder: Path,
    store: Store,
    settings: Settings,
    index: qa.Index,
    adapters: Sequence[ChatAdapter],
    mtimes: dict[Path, float],
) -> None:
    """Ingest files in `folder` that are new or changed since the last scan, and alert on them."""
    changed_files = await asyncio.to_thread(changed_since, folder, mtimes)
    if not changed_files:
        return
    report = await jobs.ingest(
        changed_files,
        store,
        thresholds=thresholds(settings),
        max_bytes=settings.articles.max_file_bytes,
        languages=settings.articles.languages,
        model=feedback_model(settings),
        index=index,
    )
    log.info("folder scan: %s, %d rejected", report.counts, len(report.rejected))
    from bot import digest

    for article, verdict in report.changed:
        if verdict.level is not Level.ALERT:
            continue
        for adapter in adapters:
            if adapter.platform == "console":
                await adapter.send(CONSOLE_CHAT, Alert(digest.item(article, verdict)))


async def run(
    settings: Settings,
    *,
    lines: AsyncIterator[str] | None = None,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the service until a signal, or end of console input; return the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with AsyncExitStack() as stack:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(loop.remove_signal_handler, sig)
        store = await stack.enter_async_context(Store.open(settings.storage.url()))
        await stack.enter_async_context(
            httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, timeout=httpx.Timeout(10.0))
        )
        folder = settings.articles.folder
        mtimes: dict[Path, float] = {}
        index = qa.Index.build([])
        conversation = Conversation(store, index, settings)
        adapters: list[ChatAdapter] = []
        console = ConsoleChat(lines=lines, out=out)
        # Without chat tokens the console is the chat; platform adapters join in later issues.
        adapters.append(console)

        await scan_folder(folder, store, settings, index, [], mtimes)
        scores = await store.scores()
        for article in await store.all_articles():
            if index.get(article.id) is None:
                index.add(article, scores.get(article.id, 0.0))

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            scan_folder,
            "interval",
            seconds=1,
            args=(folder, store, settings, index, adapters, mtimes),
            id="scan-folder",
            coalesce=True,
            max_instances=1,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        stack.callback(scheduler.shutdown, wait=False)

        await console.send(
            CONSOLE_CHAT, await conversation.digest(None, settings.chat.default_language)
        )
        for adapter in adapters:
            await adapter.start(conversation.handle)
            stack.push_async_callback(adapter.stop)

        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(console.finished.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        log.info("shutting down")
    return 0
