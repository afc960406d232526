"""The article folder as a source: files are documents, read once settled, progress kept per file.

An article from the folder is identified by its path relative to the folder, so editing a file
updates that article (it is re-classified and keeps its story, so it alerts again only if it
newly crosses the alert threshold). A file is read only once its modification time is
`settle_seconds` old, so a file still being written is not alerted on its first half. A file
counts as done only after its articles are stored (one transaction per file), so a locked
database or one poison file in the same scan never leaves a good file unread; what a scan
stored is then routed to the chats in one pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bot import articles, jobs, qa
from bot.catalog import Catalog
from bot.classify import Correction
from bot.ledger import Ledger
from bot.metrics import METRICS
from bot.models import Article, Thresholds
from bot.outbox import Outbox
from bot.sources import Sources
from bot.subscriptions import Subscriptions

log = logging.getLogger(__name__)

# Re-check a file this long after it should have settled: mtimes and timers are not exact.
_SETTLE_MARGIN = 0.1
_MAX_ID = 200
_MULTI_RECORD = (".json", ".jsonl")

Signature = tuple[int, int]


@dataclass(slots=True)
class FolderState:
    """Per file, the (mtime_ns, size) last stored or rejected: what a scan need not read again."""

    done: dict[Path, Signature] = field(default_factory=dict)
    # Whether the store was checked for articles of files deleted while newsbot was not running.
    swept: bool = False


@dataclass(frozen=True, slots=True)
class Changes:
    """Files ready to read, and when (in seconds) a still-settling file will be ready."""

    ready: list[tuple[Path, Signature]]
    wait: float | None = None
    # Files read before that are gone now (deleted, or renamed: the new name is in `ready`).
    gone: list[Path] = field(default_factory=list)
    # Every file in the folder now (for the start-up sweep of files deleted meanwhile), and
    # whether the folder itself was there to list.
    present: set[Path] = field(default_factory=set)
    listed: bool = False


@dataclass(slots=True)
class ScanReport:
    """One scan: the ingest report over all files read, and when to scan again for settling ones."""

    ingest: jobs.IngestReport = field(default_factory=jobs.IngestReport)
    wait: float | None = None
    failed: list[Path] = field(default_factory=list)


def _signature(path: Path) -> Signature:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def changed_since(folder: Path, state: FolderState, *, now: float, settle: float) -> Changes:
    """Settled files in `folder` that differ from what `state` recorded as done; records nothing."""
    ready: list[tuple[Path, Signature]] = []
    wait: float | None = None
    present: set[Path] = set()
    listed = folder.is_dir()
    for path in articles.files([folder]) if listed else []:
        try:
            signature = _signature(path)
        except OSError:
            continue
        present.add(path)
        if state.done.get(path) == signature:
            continue
        age = now - signature[0] / 1e9
        if age >= settle:
            ready.append((path, signature))
        else:
            left = settle - age + _SETTLE_MARGIN
            wait = left if wait is None else min(wait, left)
    gone = sorted(set(state.done) - present)
    for path in gone:
        # A deleted file is forgotten, so a new file at that path is read again.
        del state.done[path]
    return Changes(ready, wait, gone, present, listed)


def document_id(folder: Path, path: Path, position: int, article: Article) -> str:
    """The article's id: its path in the folder (records of a JSON file: given id, else path#n)."""
    try:
        relative = path.relative_to(folder).as_posix()
    except ValueError:
        relative = path.name
    generated = article.id == articles.content_hash(article.title, article.text)[:16]
    if not generated:
        return article.id
    doc = f"{relative}#{position}" if path.suffix.lower() in _MULTI_RECORD else relative
    # Ids are at most 200 characters in the store; a very deep path keeps its content hash.
    return doc if len(doc) <= _MAX_ID else article.id


def read_file(
    folder: Path, path: Path, max_bytes: int, languages: Sequence[str], key: str | None = None
) -> list[Article | articles.Rejection]:
    """One file's articles, identified by path; any failure to read it becomes a Rejection.

    `key`: the folder's `articles.folder_key`, when the caller has it already."""
    out: list[Article | articles.Rejection] = []
    # The file's source names this host and folder: the start-up sweep of this folder forgets
    # only what it read itself, never another folder's files (another instance, another cwd).
    source = articles.file_source(folder, path, key)
    try:
        items = articles.read([path], max_bytes, languages, within=folder)
        for position, item in enumerate(items):
            if isinstance(item, Article):
                # A record's own `source` field (an agency) stays what it says.
                own = item.source if item.source and item.source != str(path) else source
                item = replace(item, id=document_id(folder, path, position, item), source=own)
            out.append(item)
    except RecursionError:
        return [articles.Rejection(str(path), "JSON nested too deeply")]
    except Exception as exc:  # one poison file must not stop the scan
        log.exception("reading %s failed", path)
        return [articles.Rejection(str(path), f"cannot read: {type(exc).__name__}: {exc}")]
    return out


@dataclass(frozen=True, slots=True)
class FolderSource:
    """How the folder's files are read, classified and routed."""

    folder: Path
    thresholds: Thresholds
    max_bytes: int = 5_000_000
    languages: tuple[str, ...] = ("de", "en")
    settle: float = 2.0
    model: Callable[[], Correction | None] = lambda: None
    clock: Callable[[], float] = time.time


async def scan(
    source: FolderSource,
    sources: Sources,
    catalog: Catalog,
    subscriptions: Subscriptions,
    ledger: Ledger,
    state: FolderState,
    *,
    index: qa.Retrieval | None = None,
    outbox: Outbox | None = None,
    stories: jobs.StoryIndex | None = None,
) -> ScanReport:
    """Read settled new or changed files one by one, store and classify each; route them all."""
    changes = await asyncio.to_thread(
        changed_since, source.folder, state, now=source.clock(), settle=source.settle
    )
    report = ScanReport(wait=changes.wait)
    # Deletions first: a renamed file's old article must go before its new name is read (by its
    # content it would otherwise be a duplicate of the article about to be removed).
    key = await _forget_deleted(source.folder, catalog, state, changes)
    model = source.model()
    for path, signature in changes.ready:
        items = await asyncio.to_thread(
            read_file, source.folder, path, source.max_bytes, source.languages, key
        )
        found = [item for item in items if isinstance(item, Article)]
        rejected = [item for item in items if isinstance(item, articles.Rejection)]
        try:
            counts, changed = await jobs.store_and_classify(
                found, catalog, thresholds=source.thresholds, model=model, index=index
            )
        except Exception:  # a failed file is retried by the next scan
            log.exception("storing %s failed; it is read again on the next scan", path)
            report.failed.append(path)
            continue
        # Progress is per file and only after its articles are stored: a failure above leaves
        # it to the next scan.
        state.done[path] = signature
        for rejection in rejected:
            METRICS.source_errors.labels("folder").inc()
            log.warning("rejected %s: %s", rejection.where, rejection.reason)
        report.ingest.counts += counts
        report.ingest.changed += changed
        report.ingest.rejected += rejected
    if report.ingest.changed:
        # One routing pass per scan: it compares with every recent story, so not per file.
        await jobs.route(
            report.ingest.changed,
            sources,
            catalog,
            subscriptions,
            ledger,
            outbox,
            alert_threshold=source.thresholds.alert,
            now=datetime.fromtimestamp(source.clock(), UTC),
            stories=stories,
        )
    if changes.ready:
        counts = report.ingest.counts
        # Records refused by the reader (bad files) and at the store's edge are one count.
        log.info(
            "folder: %d new, %d updated, %d unchanged, %d rejected, %d failed",
            counts.new,
            counts.updated,
            counts.duplicate,
            counts.rejected + len(report.ingest.rejected),
            len(report.failed),
        )
    return report


async def _forget_deleted(
    folder: Path, catalog: Catalog, state: FolderState, changes: Changes
) -> str:
    """Remove from the store the articles of files deleted from the folder: answers and digests
    must not cite a file that is gone (also those deleted while newsbot was stopped).

    Only this folder's own files: their sources start with its key (this host, its resolved
    path), so another instance's folder or one in another working directory is left alone.
    Returns the folder's key."""
    key = articles.folder_key(folder)
    gone = {articles.file_source(folder, path, key) for path in changes.gone}
    if not state.swept and changes.listed:
        # A missing folder (an unmounted share) sweeps nothing: only files missing from a folder.
        state.swept = True
        present = {articles.file_source(folder, path, key) for path in changes.present}
        gone |= {s for s in await catalog.file_sources(key + "/") if s not in present}
    for path in sorted(gone):
        removed = await catalog.forget_source(path)
        if removed:
            log.info("folder: %s is gone; removed its %d article(s) from the store", path, removed)
    return key


async def watch_folder(
    folder: Path, on_change: Callable[[], Awaitable[float | None]], stop: asyncio.Event
) -> None:
    """Call `on_change` when files in `folder` change, and again when a settling file is due."""
    import watchfiles

    async def settle_later(delay: float) -> None:
        await asyncio.sleep(delay)
        # No longer waiting: the scan below may need to schedule the next settle check.
        task = asyncio.current_task()
        if task is not None:
            pending.discard(task)
        await run_once()

    pending: set[asyncio.Task[None]] = set()

    async def run_once() -> None:
        try:
            wait = await on_change()
        except Exception:  # keep watching; the next change or scan retries
            log.exception("reading changed files in %s failed", folder)
            return
        if wait is not None and not any(not t.done() for t in pending):
            task = asyncio.create_task(settle_later(wait), name="folder-settle")
            pending.add(task)
            task.add_done_callback(pending.discard)

    try:
        async for _changes in watchfiles.awatch(
            folder, stop_event=stop, debounce=200, step=50, recursive=True
        ):
            await run_once()
    except FileNotFoundError:
        log.warning("article folder %s does not exist; not watching it", folder)
    finally:
        for task in pending:
            task.cancel()
