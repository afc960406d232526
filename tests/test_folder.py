"""Tests for the article folder: path ids, edits update, settle time, per-file progress, poison."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import db as db_module
from bot import folder, qa
from bot.classify import classify
from bot.config import Settings
from bot.models import Article, ChatRef, Level, Thresholds
from bot.store import Store

from .conftest import SEED, only
from .fakes import VirtualClock
from .repos import routing

CHAT = ChatRef("console", "local")
SETTLE = 2.0
CALM = (
    "Stadtfest lockt tausende Besucher\n\nDas Stadtfest in Linz lockte am Wochenende "
    "tausende Besucher an. Es gab Musik, Essen und ein Feuerwerk über der Donau."
)
WAR = (
    "Luftangriffe auf Aleppo\n\nBei Luftangriffen und Artilleriebeschuss auf Aleppo sind "
    "nach Angaben von Rebellen dutzende Zivilisten getötet worden. Die syrische Armee "
    "setzte ihre Offensive gegen die Rebellen fort; Truppen rückten in den Osten der Stadt vor."
)


class Clock:
    """Wall time in epoch seconds, moved by the test; files get mtimes on the same clock."""

    def __init__(self) -> None:
        self.virtual = VirtualClock()

    def __call__(self) -> float:
        return self.virtual.now.timestamp()

    async def advance(self, seconds: float) -> None:
        await self.virtual.sleep(seconds)


def write(path: Path, text: str, at: float, mode: str = "w") -> None:
    """Write (or append) a real file and give it the virtual modification time `at`."""
    with path.open(mode, encoding="utf-8") as fh:
        fh.write(text)
    os.utime(path, (at, at))


def source_of(settings: Settings, clock: Clock) -> folder.FolderSource:
    return folder.FolderSource(settings.articles.folder, Thresholds(), settle=SETTLE, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def alerts(store: Store) -> list[dict[str, Any]]:
    return [row for row in await store.ledger.deliveries() if row["kind"] == "alert"]


def test_document_id_is_the_path_in_the_folder(tmp_path: Path) -> None:
    sub = tmp_path / "wire"
    sub.mkdir()
    write(sub / "a.txt", WAR, 0)
    [article] = folder.read_file(tmp_path, sub / "a.txt", 100_000, ("de", "en"))
    assert isinstance(article, Article) and article.id == "wire/a.txt"
    write(
        tmp_path / "b.jsonl",
        '{"text": "Kämpfe im Osten."}\n{"id": "x1", "text": "Noch mehr."}\n',
        0,
    )
    read = folder.read_file(tmp_path, tmp_path / "b.jsonl", 100_000, ("de",))
    ids = [a.id for a in read if isinstance(a, Article)]
    assert ids == ["b.jsonl#0", "x1"]


@pytest.mark.reliability
async def test_half_written_file_is_read_only_once_settled(
    settings: Settings, store: Store, clock: Clock
) -> None:
    # The fault: a file written in two chunks 2 s apart was alerted on its first half.
    await store.subscriptions.subscribe(CHAT, "de")
    state = folder.FolderState()
    source = source_of(settings, clock)
    path = settings.articles.folder / "aleppo.txt"
    first, second = WAR[:150], WAR[150:]
    assert classify(Article("x", "", first, "de")).level is Level.ALERT  # the half alerts too
    write(path, first, clock())
    await clock.advance(0.5)
    report = await folder.scan(source, *routing(store), state)
    assert report.ingest.counts.new == 0 and report.wait == pytest.approx(1.6, abs=0.01)
    await clock.advance(1.5)
    write(path, second, clock(), mode="a")
    await clock.advance(0.3)
    assert (await folder.scan(source, *routing(store), state)).ingest.counts.new == 0
    assert await store.catalog.count_articles() == 0
    await clock.advance(SETTLE)
    report = await folder.scan(source, *routing(store), state)
    assert report.ingest.counts.new == 1 and report.wait is None
    stored = await store.catalog.get_article("aleppo.txt")
    assert stored is not None and stored.text.endswith("in den Osten der Stadt vor.")
    [alert] = await alerts(store)
    assert alert["key"] == "aleppo.txt"


async def test_edited_file_updates_its_article_without_a_second_alert(
    settings: Settings, store: Store, clock: Clock
) -> None:
    await store.subscriptions.subscribe(CHAT, "de")
    state = folder.FolderState()
    source = source_of(settings, clock)
    path = settings.articles.folder / "aleppo.txt"
    write(path, WAR, clock() - 10)
    assert (await folder.scan(source, *routing(store), state)).ingest.counts.new == 1
    write(path, "\nDie Kämpfe dauerten am Abend an.", clock() - 5, mode="a")
    report = await folder.scan(source, *routing(store), state)
    assert (report.ingest.counts.new, report.ingest.counts.updated) == (0, 1)
    assert await store.catalog.count_articles() == 1
    stored = await store.catalog.get_article("aleppo.txt")
    assert stored is not None and stored.text.endswith("am Abend an.")
    [(_, verdict)] = await store.catalog.entries(["aleppo.txt"])
    assert verdict.score == classify(stored).score  # re-classified
    assert len(await alerts(store)) == 1
    # Nothing changed: nothing is read again.
    assert (await folder.scan(source, *routing(store), state)).ingest.read == 0


async def test_edit_that_newly_crosses_the_threshold_alerts_once(
    settings: Settings, store: Store, clock: Clock
) -> None:
    await store.subscriptions.subscribe(CHAT, "de")
    state = folder.FolderState()
    source = source_of(settings, clock)
    path = settings.articles.folder / "news.txt"
    write(path, CALM, clock() - 30)
    await folder.scan(source, *routing(store), state)
    assert await alerts(store) == []
    write(path, WAR, clock() - 20)
    await folder.scan(source, *routing(store), state)
    write(path, WAR + "\nAuch am Dienstag gab es Gefechte.", clock() - 10)
    await folder.scan(source, *routing(store), state)
    [alert] = await alerts(store)
    assert alert["key"] == "news.txt"
    assert await store.catalog.count_articles() == 1


@pytest.fixture
async def quick_locks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Store, Path]]:
    """A real SQLite store that gives up on a lock after 50 ms instead of 5 s."""

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=50")
        cursor.close()

    monkeypatch.setattr(db_module, "_sqlite_pragmas", pragmas)
    path = settings.storage.data_dir / "newsbot.sqlite3"
    async with Store.open(f"sqlite+aiosqlite:///{path}") as opened:
        yield opened, path


@pytest.mark.reliability
@only("sqlite", "SQLite's 'database is locked' is the fault")
async def test_locked_database_and_poison_file_leave_no_good_file_unread(
    settings: Settings, quick_locks: tuple[Store, Path], clock: Clock
) -> None:
    # The fault: changed_since recorded the mtime before ingest, so after a failed scan (a
    # locked database, or a 200,000-deep JSON array raising RecursionError) the good file was
    # never read again.
    store, db_path = quick_locks
    await store.subscriptions.subscribe(CHAT, "de")
    articles_dir = settings.articles.folder
    write(articles_dir / "deep.json", "[" * 200_000 + "]" * 200_000, clock() - 60)
    write(articles_dir / "good.txt", SEED.read_text("utf-8"), clock() - 60)
    state = folder.FolderState()
    source = source_of(settings, clock)
    index = qa.Index.build([])

    locker = sqlite3.connect(db_path)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        report = await folder.scan(source, *routing(store), state, index=index)
    finally:
        locker.rollback()
        locker.close()
    assert report.failed == [articles_dir / "good.txt"]
    [poison] = report.ingest.rejected
    assert poison.where.endswith("deep.json") and poison.reason == "JSON nested too deeply"
    assert await store.catalog.count_articles() == 0

    report = await folder.scan(source, *routing(store), state, index=index)
    assert report.failed == [] and report.ingest.rejected == []  # the poison is not re-read
    assert report.ingest.counts.new == 1
    assert await store.catalog.get_article("good.txt") is not None
    assert index.get("good.txt") is not None
    [alert] = await alerts(store)
    assert alert["key"] == "good.txt"
    assert (await folder.scan(source, *routing(store), state, index=index)).ingest.read == 0


async def test_deleted_file_is_forgotten_and_a_new_one_there_is_read(
    settings: Settings, store: Store, clock: Clock
) -> None:
    state = folder.FolderState()
    source = source_of(settings, clock)
    path = settings.articles.folder / "a.txt"
    write(path, CALM, clock() - 30)
    await folder.scan(source, *routing(store), state)
    path.unlink()
    await folder.scan(source, *routing(store), state)
    assert state.done == {}
    write(path, WAR, clock() - 20)
    # The deleted file's article went with it: the new file is a new article.
    assert (await folder.scan(source, *routing(store), state)).ingest.counts.new == 1


async def test_a_scan_logs_plain_counts_naming_each_rejected_file(
    settings: Settings, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The scan line was a Python repr with two contradictory "rejected" counts."""
    caplog.set_level(logging.INFO, logger="bot.folder")
    state = folder.FolderState()
    source = source_of(settings, clock)
    write(settings.articles.folder / "a.txt", WAR, clock() - 30)
    write(settings.articles.folder / "empty.txt", "", clock() - 30)
    await folder.scan(source, *routing(store), state)
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.folder"]
    assert any("rejected" in line and "empty.txt" in line for line in lines), lines
    [summary] = [line for line in lines if line.startswith("folder: ")]
    assert summary == "folder: 1 new, 0 updated, 0 unchanged, 1 rejected, 0 failed"


async def test_a_symlink_to_a_file_outside_the_folder_is_refused_with_one_log_line(
    settings: Settings, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """`ln -s /etc/passwd articles/pw.txt` was stored as an article, searchable and exported."""
    caplog.set_level(logging.INFO, logger="bot.folder")
    outside = settings.articles.folder.parent / "passwd.txt"
    write(outside, "root:x:0:0:root:/root:/bin/bash\n", clock() - 30)
    (settings.articles.folder / "pw.txt").symlink_to(outside)
    write(settings.articles.folder / "a.txt", WAR, clock() - 30)
    state = folder.FolderState()
    report = await folder.scan(source_of(settings, clock), *routing(store), state)
    assert report.ingest.counts.new == 1
    assert [a.id for a in await store.catalog.all_articles()] == ["a.txt"]
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.folder"]
    [refused] = [line for line in lines if "pw.txt" in line]
    assert "outside" in refused
    await folder.scan(
        source_of(settings, clock), *routing(store), state
    )  # not again for the same link
    assert sum("pw.txt" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.reliability
async def test_deleted_and_renamed_files_take_their_articles_with_them(
    settings: Settings, store: Store, clock: Clock
) -> None:
    """Answers and digests cited files that had been deleted or renamed (stale copies)."""
    from bot import search

    state = folder.FolderState()
    source = source_of(settings, clock)
    kabul = settings.articles.folder / "kabul.txt"
    calm = settings.articles.folder / "linz.jsonl"
    write(kabul, WAR, clock() - 30)
    write(
        calm, json.dumps({"text": CALM}) + "\n" + json.dumps({"text": WAR + " Mehr."}), clock() - 30
    )
    await folder.scan(source, *routing(store), state)
    assert await store.catalog.count_articles() == 3
    renamed = settings.articles.folder / "kabul-renamed.txt"
    kabul.rename(renamed)
    calm.unlink()
    await folder.scan(source, *routing(store), state)
    assert await store.catalog.get_article("kabul.txt") is None
    assert await store.catalog.get_article("linz.jsonl#0") is None
    moved = await store.catalog.get_article("kabul-renamed.txt")
    assert moved is not None and "Aleppo" in moved.text
    assert await store.catalog.count_articles() == 1
    with search.StoreIndex(store.engine.url) as index:
        hits = index.search("Luftangriffe Aleppo Zivilisten", k=10)
    assert {article.id for article, _ in hits} == {"kabul-renamed.txt"}


@pytest.mark.reliability
async def test_files_deleted_while_stopped_are_removed_at_the_next_start(
    settings: Settings, store: Store, clock: Clock
) -> None:
    source = source_of(settings, clock)
    path = settings.articles.folder / "a.txt"
    write(path, WAR, clock() - 30)
    write(settings.articles.folder / "b.txt", CALM, clock() - 30)
    await folder.scan(source, *routing(store), folder.FolderState())
    path.unlink()  # while no newsbot runs
    await folder.scan(source, *routing(store), folder.FolderState())  # a new process: a fresh state
    assert await store.catalog.get_article("a.txt") is None
    assert await store.catalog.get_article("b.txt") is not None


async def test_a_missing_folder_removes_nothing(
    settings: Settings, store: Store, clock: Clock, tmp_path: Path
) -> None:
    """An unmounted share must not empty the store."""
    write(settings.articles.folder / "a.txt", WAR, clock() - 30)
    await folder.scan(source_of(settings, clock), *routing(store), folder.FolderState())
    gone = folder.FolderSource(tmp_path / "unmounted", Thresholds(), settle=SETTLE, clock=clock)
    await folder.scan(gone, *routing(store), folder.FolderState())
    assert await store.catalog.get_article("a.txt") is not None


@pytest.mark.reliability
async def test_a_fifo_in_the_folder_is_named_and_the_rest_is_read(
    settings: Settings, store: Store, clock: Clock
) -> None:
    """A FIFO in the watched folder was skipped without a word (review defect 8)."""
    write(settings.articles.folder / "a.txt", WAR, clock() - 30)
    pipe = settings.articles.folder / "pipe.txt"
    os.mkfifo(pipe)
    os.utime(pipe, (clock() - 30, clock() - 30))  # settled, on the test's clock
    report = await folder.scan(source_of(settings, clock), *routing(store), folder.FolderState())
    assert report.ingest.counts.new == 1
    assert [(r.where, r.reason) for r in report.ingest.rejected] == [
        (str(pipe), "not a regular file (FIFO, device or socket); not read")
    ]


@pytest.mark.reliability
async def test_a_folder_record_reusing_an_id_with_other_text_is_rejected(
    settings: Settings, store: Store, clock: Clock
) -> None:
    """The later record of a reused id replaced the first, counted as "duplicate" (review #5)."""
    path = settings.articles.folder / "dup.jsonl"
    write(
        path,
        json.dumps({"id": "r1", "text": WAR}) + "\n" + json.dumps({"id": "r1", "text": CALM}),
        clock() - 30,
    )
    report = await folder.scan(source_of(settings, clock), *routing(store), folder.FolderState())
    assert [(r.where, r.reason) for r in report.ingest.rejected] == [
        (f"{path}:2", "duplicate id 'r1' (first on line 1, with other text)")
    ]
    stored = await store.catalog.get_article("r1")
    assert stored is not None and stored.text == WAR.strip()


@pytest.mark.reliability
async def test_another_folder_never_forgets_this_folders_files(
    settings: Settings, store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of another working directory, or of another instance with the same path, swept
    every article this folder brought: they were stored as `articles/<file>` (review defect 1)."""
    import socket

    first, second = tmp_path / "m1", tmp_path / "m2"
    for where, name, text in ((first, "a1.txt", WAR), (second, "b1.txt", CALM)):
        (where / "articles").mkdir(parents=True)
        write(where / "articles" / name, text, clock() - 30)
    # The default set-up: `articles`, relative to the working directory.
    relative = folder.FolderSource(Path("articles"), Thresholds(), settle=SETTLE, clock=clock)

    async def start_in(where: Path) -> set[str]:
        """A fresh process's first scan in `where`; the ids then stored."""
        monkeypatch.chdir(where)
        await folder.scan(relative, *routing(store), folder.FolderState())
        return {article.id for article in await store.catalog.all_articles()}

    assert await start_in(first) == {"a1.txt"}
    assert await start_in(second) == {"a1.txt", "b1.txt"}
    # Another machine whose folder has the same absolute path, without a1.txt: not its file.
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    (first / "articles" / "a1.txt").rename(tmp_path / "a1.txt")
    assert await start_in(first) == {"a1.txt", "b1.txt"}
    monkeypatch.undo()
    (tmp_path / "a1.txt").rename(first / "articles" / "a1.txt")
    # A file deleted from its own folder while stopped still takes its article out.
    (second / "articles" / "b1.txt").unlink()
    assert await start_in(second) == {"a1.txt"}
    (first / "articles" / "a1.txt").unlink()
    assert await start_in(first) == set()


@pytest.mark.reliability
def test_two_newsbot_runs_in_their_own_working_directories_keep_each_others_articles(
    settings: Settings, tmp_path: Path
) -> None:
    """The review's reproduction with real processes: `newsbot run` from two directories, each
    with its own `articles/`, on one store (one PostgreSQL database, or one SQLite file)."""
    import subprocess
    import sys

    from .conftest import ROOT, database_env

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        **database_env(settings),
    }
    env.pop("NEWSBOT_ARTICLES", None)  # each its own `articles/`, relative to its directory
    first, second = tmp_path / "m1", tmp_path / "m2"
    for where, stem, text in ((first, "a", WAR), (second, "b", CALM)):
        (where / "articles").mkdir(parents=True)
        for n in (1, 2):
            (where / "articles" / f"{stem}{n}.txt").write_text(f"{text} ({stem}{n})")
            os.utime(where / "articles" / f"{stem}{n}.txt", (1, 1))  # settled long ago

    def run_in(where: Path) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "run"],
            cwd=where,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        database = settings.storage.url()

        async def ids() -> list[str]:
            async with Store.open(database) as store:
                return sorted(a.id for a in await store.catalog.all_articles())

        import asyncio

        return asyncio.run(ids())

    assert run_in(first) == ["a1.txt", "a2.txt"]
    assert run_in(second) == ["a1.txt", "a2.txt", "b1.txt", "b2.txt"]
    assert run_in(first) == ["a1.txt", "a2.txt", "b1.txt", "b2.txt"]
    (second / "articles" / "b2.txt").unlink()  # while stopped: gone at its next start
    assert run_in(second) == ["a1.txt", "a2.txt", "b1.txt"]


@pytest.mark.reliability
async def test_a_renamed_file_is_not_alerted_again_and_a_restored_one_is_stored_again(
    settings: Settings, store: Store, clock: Clock
) -> None:
    """A renamed file's text was alerted a second time under its new name (review defect 2)."""
    from bot import jobs

    await store.subscriptions.subscribe(CHAT, "de")
    source = source_of(settings, clock)
    path = settings.articles.folder / "a.txt"
    write(path, WAR, clock() - 30)
    running, index = folder.FolderState(), jobs.StoryIndex()
    await folder.scan(source, *routing(store), running, stories=index)
    assert [a["key"] for a in await alerts(store)] == ["a.txt"]
    # Renamed while running (the process's story index kept), then twice while stopped.
    path.rename(settings.articles.folder / "renamed.txt")
    await folder.scan(source, *routing(store), running, stories=index)
    (settings.articles.folder / "renamed.txt").rename(settings.articles.folder / "again.txt")
    await folder.scan(source, *routing(store), folder.FolderState())
    sub = settings.articles.folder / "wire"
    sub.mkdir()
    (settings.articles.folder / "again.txt").rename(sub / "moved.txt")
    await folder.scan(source, *routing(store), folder.FolderState())
    assert [a.id for a in await store.catalog.all_articles()] == ["wire/moved.txt"]
    assert [a["key"] for a in await alerts(store)] == ["a.txt"]
    # Deleted, then restored under its first name: stored again (no tombstone), not alerted.
    (sub / "moved.txt").unlink()
    await folder.scan(source, *routing(store), folder.FolderState())
    assert await store.catalog.count_articles() == 0
    write(path, WAR, clock() - 10)
    report = await folder.scan(source, *routing(store), folder.FolderState())
    assert report.ingest.counts.new == 1
    assert [a.id for a in await store.catalog.all_articles()] == ["a.txt"]
    assert [a["key"] for a in await alerts(store)] == ["a.txt"]


@pytest.mark.reliability
async def test_newsbot_run_does_not_alert_a_file_renamed_while_it_was_stopped(
    settings: Settings, tmp_path: Path
) -> None:
    """The review's reproduction: a real `newsbot run` (console chat) alerts a file dropped
    while it runs; renamed while stopped, the next `newsbot run` owed it again, new name."""
    import asyncio
    import sys

    from .conftest import ROOT, database_env

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_ARTICLES": str(settings.articles.folder),
        **database_env(settings),
        "PYTHONUNBUFFERED": "1",  # each console line as it is printed
    }

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def until(
        process: asyncio.subprocess.Process, start: str, touch: Path | None = None
    ) -> None:
        """Read the console's lines until one starts with `start` (touching `touch` meanwhile:
        the watcher starts after the prompt, and a change before it is seen only by the
        safety interval's scan)."""
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline, stamps = loop.time() + 60, 1_000_000_000.0
        pending = asyncio.ensure_future(process.stdout.readline())
        while loop.time() < deadline:
            done, _ = await asyncio.wait({pending}, timeout=2)
            if not done:
                if touch is not None:
                    # Another mtime, long settled: a change the watcher sees and reads at once.
                    stamps -= 60
                    os.utime(touch, (stamps, stamps))
                continue
            line = pending.result().decode()
            assert line, "newsbot run ended"
            if line.startswith(start):
                return
            pending = asyncio.ensure_future(process.stdout.readline())
        pending.cancel()
        raise AssertionError(f"no line starting {start!r} within 60 s")

    async def alert_keys() -> list[str]:
        async with Store.open(settings.storage.url()) as store:
            return sorted(row["key"] for row in await alerts(store))

    running = await start()
    assert running.stdin is not None
    await until(running, "Type a question")  # the console chat is subscribed
    path = settings.articles.folder / "a.txt"
    path.write_text(WAR, encoding="utf-8")
    await until(running, "🚨", touch=path)
    running.stdin.close()
    assert await asyncio.wait_for(running.wait(), 60) == 0
    assert await alert_keys() == ["a.txt"]

    async def restart() -> list[str]:
        process = await start()
        assert process.stdin is not None
        await until(process, "Type a question")  # its start-up scan has stored and routed
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 60) == 0
        return await alert_keys()

    renamed = settings.articles.folder / "again.txt"
    path.rename(renamed)  # while stopped
    assert await restart() == ["a.txt"]
    renamed.rename(path)  # and back: not owed again either
    assert await restart() == ["a.txt"]
