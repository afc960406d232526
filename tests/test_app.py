import asyncio
import io
import os
import shutil
import sys
import time
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import app, qa
from bot.chat import DeliveryError
from bot.chat.telegram import TelegramChat
from bot.config import Settings
from bot.folder import FolderState
from bot.ledger import AlertOwed
from bot.models import Alert, Article, ChatRef, Level, Limits, Post, Preferences, Sent, Verdict
from bot.outbox import Outbox
from bot.store import Store
from bot.subscriptions import Subscription

from .conftest import ROOT, SEED, only
from .repos import repositories, routing

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

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        self.sent.append((chat, post))
        return Sent(("1",))


async def test_console_run_prints_digest_answers_and_exits_zero(settings: Settings) -> None:
    shutil.copy2(SEED, settings.articles.folder)
    out = io.StringIO()
    code = await app.run(settings, lines=lines("who attends from Germany?\n", "/help\n"), out=out)
    text = out.getvalue()
    assert code == 0
    assert text.index("Conflict digest") < text.index("Michaelis") < text.index("/subscribe")
    # The answer cites its source (the digest above has "Source:" lines of its own).
    answer = text[text.index("Michaelis") : text.index("/subscribe")]
    assert "Source: " in answer


async def test_folder_scan_ingests_new_files_once_and_alerts(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    folder = settings.articles.folder
    chat = RecordingChat()
    await store.subscriptions.subscribe(CHAT, "en")
    outbox = Outbox(store.ledger, store.subscriptions, {"console": chat})
    index = qa.Index.build([])
    source, state = app.folder_source(settings), FolderState()
    await app.scan_folder(source, *routing(store), state, index, outbox)
    assert await store.catalog.count_articles() == 0
    began = time.monotonic()
    shutil.copy2(SEED, folder)  # keeps the seed's old mtime: settled, read at once
    await app.scan_folder(source, *routing(store), state, index, outbox)
    await app.scan_folder(source, *routing(store), state, index, outbox)
    await outbox.drain()
    assert await store.catalog.count_articles() == 1
    alerts = [post for _, post in chat.sent if isinstance(post, Alert)]
    assert len(alerts) == 1 and alerts[0].item.title.startswith("Vertreter der 30 Nato-Staaten")
    assert index.get(alerts[0].item.article_id) is not None
    [row] = await store.ledger.deliveries("sent")
    # Measured from when the file was read, not from the article's 2022 date.
    assert row["latency_ms"] is not None
    assert row["latency_ms"] <= (time.monotonic() - began) * 1000 + 1


class SlowToStart:
    """An adapter that takes a while to connect and to disconnect, and counts sends outside."""

    # Telegram's pacing (29.5 msg/s): the 40 alerts take over a second, so a stop lands mid-way.
    platform = "telegram"
    limits = TelegramChat.limits

    def __init__(self, store: Store, stop_after: int, stop: asyncio.Event) -> None:
        self.store, self.stop_after, self.stop_event = store, stop_after, stop
        self.up = False
        self.sent: list[str] = []
        self.outside = 0

    async def _busy(self) -> None:
        # Real database round trips: time in which an outbox already running would send.
        for _ in range(40):
            await self.store.catalog.count_articles()

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
        await store.catalog.add_articles(
            [Article("a1", "Troops shell the city", "Fighting.", "en")]
        )
        await store.catalog.save_verdicts([Verdict("a1", True, 0.9, (), Level.ALERT, ())])
        for chat in chats:
            await store.subscriptions.subscribe(chat, "en", Preferences(digest_at=None))
            await store.ledger.enqueue(chat, "a1", AlertOwed("a1"))
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
        rows = await store.ledger.deliveries()
    assert sorted(received) == [c.chat_id for c in chats]  # each once
    # No attempt was charged for the adapter being down: every row sent on its first attempt.
    assert {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}


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
        await store.subscriptions.subscribe(chat, "en", settings.digest.preferences())
    scheduler = AsyncIOScheduler()
    outbox = Outbox(store.ledger, store.subscriptions, {"telegram": FakeChat()})
    async with httpx.AsyncClient() as client:
        jobs = app.Jobs(
            scheduler, *repositories(store), settings, client, qa.Index.build([]), outbox
        )
        await jobs.sync()
        assert len(scheduler.get_jobs()) == 2000
        full_reads = 0
        real = store.subscriptions.active

        async def counting(platform: str | None = None) -> list[Subscription]:
            nonlocal full_reads
            full_reads += 1
            return await real(platform)

        monkeypatch.setattr(store.subscriptions, "active", counting)
        added: list[str] = []
        real_add = scheduler.add_job

        def recording(*args: Any, **kwargs: Any) -> Any:
            added.append(kwargs["id"])
            return real_add(*args, **kwargs)

        monkeypatch.setattr(scheduler, "add_job", recording)
        await store.subscriptions.unsubscribe(chats[7])
        await jobs.changed(Change(chat=chats[7]))
        await store.sources.add("https://news.example/rss", added_by="telegram:1")
        [feed] = await store.sources.active()
        await jobs.changed(Change(source_id=feed.id))
        assert scheduler.get_job(f"feed-{feed.id}") is not None
        await store.sources.remove(feed.id)
        await jobs.changed(Change(source_id=feed.id))
    assert full_reads == 0
    assert added == [f"feed-{feed.id}"]
    assert len(scheduler.get_jobs()) == 1999
    assert scheduler.get_job(f"feed-{feed.id}") is None


@pytest.mark.reliability
async def test_run_starts_and_reads_the_good_file_beside_a_poison_file(settings: Settings) -> None:
    # The fault: a 200,000-deep JSON array raised RecursionError out of the start-up scan.
    shutil.copy2(SEED, settings.articles.folder)
    deep = settings.articles.folder / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    os.utime(deep, (0, 0))
    out = io.StringIO()
    code = await app.run(settings, lines=lines(), out=out)
    assert code == 0
    assert "Vertreter der 30 Nato-Staaten" in out.getvalue()


async def test_nightly_retrain_waits_for_enough_new_judgements(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from bot.learn import FeedbackModel

    model_path = tmp_path / "data" / "feedback-model.json"
    classifier = settings.classifier.model_copy(
        update={"feedback_model": model_path, "retrain_min_judgements": 20}
    )
    configured = settings.model_copy(update={"classifier": classifier})
    assert await app.retrain_job(store.catalog, settings) == "off"  # no model path configured
    batch = [
        Article(f"w{i}", f"Air strikes hit town {i}", "Fighting and shelling.", "en")
        for i in range(12)
    ] + [
        Article(f"s{i}", f"Cup final {i} tonight", "The striker scored twice.", "en")
        for i in range(12)
    ]
    await store.catalog.add_articles(batch)
    for article in batch[:10]:
        await store.catalog.add_feedback(article.id, ChatRef("test", "c"), "u", True)
    assert await app.retrain_job(store.catalog, configured) == "waiting: 10 new judgements of 20"
    assert not model_path.exists()
    for article in batch:
        await store.catalog.add_feedback(
            article.id, ChatRef("test", "c"), "u", article.id[0] == "w"
        )
    assert await app.retrain_job(store.catalog, configured) == "re-trained on 24 judgements"
    model = FeedbackModel.load(model_path)
    assert model.n_examples == 24 and model.n_positive == 12
    # Nothing new since the model was written: it is left alone.
    assert (await app.retrain_job(store.catalog, configured)).startswith("waiting: 0 new")


@pytest.mark.reliability
@only("sqlite", "the lock on the SQLite file; on PostgreSQL instances share the database")
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
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: another newsbot is already running"), lines
        assert out == b""
        # The same file through a symlink, and (review defect 9) through a hard link, is the
        # same database: each ran beside the first.
        database = settings.storage.data_dir / "newsbot.sqlite3"
        alias = settings.storage.data_dir.parent / "alias.sqlite3"
        alias.symlink_to(database)
        hard = settings.storage.data_dir.parent / "hard.sqlite3"
        hard.hardlink_to(database)
        for other in (alias, hard):
            refused = await asyncio.create_subprocess_exec(
                *run[:-1],
                "--db",
                f"sqlite:///{other}",
                "run",
                env=env,
                stdin=DEVNULL,
                stdout=PIPE,
                stderr=PIPE,
                cwd=str(ROOT),
            )
            out, err = await asyncio.wait_for(refused.communicate(), 60)
            assert refused.returncode == 2, (other, err)
            lines = err.decode().strip().splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith("error: another newsbot is already running"), lines
        first.stdin.close()  # end of console input: the first one exits as usual
        assert await asyncio.wait_for(first.wait(), 60) == 0
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    # The lock went with the process.
    with app.single_instance(settings.storage.url()):
        pass


def test_the_instance_lock_is_on_the_file_however_it_is_reached(tmp_path: Path) -> None:
    real = tmp_path / "data" / "newsbot.sqlite3"
    real.parent.mkdir()
    real.touch()
    alias = tmp_path / "alias.sqlite3"
    alias.symlink_to(real)
    (tmp_path / "other").mkdir()
    dotdot = tmp_path / "other" / ".." / "data" / "newsbot.sqlite3"
    hard = tmp_path / "other" / "hard.sqlite3"
    hard.hardlink_to(real)
    with app.single_instance(f"sqlite+aiosqlite:///{real}"):
        for spelling in (alias, dotdot, hard):
            with (
                pytest.raises(app.InstanceRunning, match="already running"),
                app.single_instance(f"sqlite+aiosqlite:///{spelling}"),
            ):
                pass
    assert not list(tmp_path.rglob("*.lock"))  # no side file named after one spelling
    with app.single_instance(f"sqlite+aiosqlite:///{alias}"):  # released: free again
        pass


async def test_operator_endpoint_shows_readiness_and_the_alert_latency_histogram(
    settings: Settings,
) -> None:
    import aiohttp

    from bot.metrics import METRICS

    port = _free_port()
    configured = settings.model_copy(
        update={"ops": settings.ops.model_copy(update={"http_port": port})}
    )
    before = METRICS.alert_latency.labels("console")._sum.get()  # type: ignore[attr-defined]
    sent = METRICS.deliveries.labels("console", "alert", "sent")
    sent_before = sent._value.get()  # type: ignore[attr-defined]
    shutil.copy(SEED, configured.articles.folder)
    async with Store.open(configured.storage.url()) as store:
        await store.subscriptions.subscribe(CHAT, "en")
    chat = RecordingChat()
    stop = asyncio.Event()
    service = asyncio.create_task(app.run(configured, adapters=[chat], stop=stop))
    try:
        for _ in range(400):  # until the alert is sent and recorded in the ledger
            if sent._value.get() > sent_before:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                health = await response.json()
                status = response.status
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                page = await response.text()
    finally:
        stop.set()
        assert await service == 0
    assert any(isinstance(post, Alert) for _, post in chat.sent)
    assert status == 200 and health["ready"] is True
    assert health["checks"] == {"database": "ok", "scheduler": "running", "role": "leader"}
    assert 'newsbot_alert_latency_seconds_count{platform="console"}' in page
    assert METRICS.alert_latency.labels("console")._sum.get() > before  # type: ignore[attr-defined]
    assert 'newsbot_deliveries_total{kind="alert",outcome="sent",platform="console"}' in page
    assert 'newsbot_articles_ingested_total{lang="de",source="folder"}' in page
    assert "newsbot_deliveries_pending 0.0" in page


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.reliability
@only("postgresql", "the advisory-lock election of instances sharing a PostgreSQL database")
async def test_two_instances_on_postgresql_one_polls_and_a_killed_leader_hands_over(
    database: str, tmp_path: Path
) -> None:
    """Checklist 4: only the advisory-lock leader calls getUpdates; the follower waits quietly;
    killing the leader (SIGKILL) hands over well within 30 s, and no 409 is drawn."""
    import signal

    from .fake_telegram import FakeTelegram

    token, user = "123456:TEST-token", 42

    async with FakeTelegram(token=token) as fake:

        async def instance(name: str) -> asyncio.subprocess.Process:
            (tmp_path / name / "articles").mkdir(parents=True)
            env = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": token,
                "NEWSBOT_TELEGRAM_API_URL": fake.base_url,
                "NEWSBOT_DATABASE_URL": database,
                "NEWSBOT_ARTICLES": str(tmp_path / name / "articles"),
                "NEWSBOT_DATA_DIR": str(tmp_path / name / "data"),
                "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
            }
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "-v", "run", env=env, stdin=DEVNULL, stderr=PIPE
            )

        async def stderr_lines(process: asyncio.subprocess.Process, into: list[str]) -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                into.append(line.decode())

        def polls_done() -> int:
            return len([c for c in fake.calls_to("getUpdates") if c.status is not None])

        first = await instance("a")
        first_log: list[str] = []
        reading_first = asyncio.create_task(stderr_lines(first, first_log))
        second: asyncio.subprocess.Process | None = None
        try:
            await fake.wait_for_calls("getUpdates", 1, timeout=60)
            second = await instance("b")
            second_log: list[str] = []
            reading_second = asyncio.create_task(stderr_lines(second, second_log))
            for _ in range(600):  # until the second instance has lost an election round
                if any("this one follows" in line for line in second_log):
                    break
                await asyncio.sleep(0.1)
            assert any("this one follows" in line for line in second_log), second_log
            fake.push_message(user, "/start")
            [welcome] = await fake.wait_for_sent(1, timeout=30)
            # An article dropped at the follower is owed in the shared ledger; the leader,
            # the one sender, alerts on it once.
            shutil.copy(SEED, tmp_path / "b" / "articles")
            _, alert = await fake.wait_for_sent(2, timeout=60)
            # Several election rounds (5 s apart) pass while the leader polls on.
            await asyncio.sleep(11)
            assert [c for c in fake.calls_to("getUpdates") if c.status == 409] == []
            killed_at = fake.clock()
            polls_before = polls_done()
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
            for _ in range(600):
                if any(c.time > killed_at for c in fake.calls_to("getUpdates")):
                    break
                await asyncio.sleep(0.1)
            new_polls = [c for c in fake.calls_to("getUpdates") if c.time > killed_at]
            assert new_polls, "no instance took over polling"
            handover = new_polls[0].time - killed_at
            fake.push_message(user, "/help")
            *_, help_text = await fake.wait_for_sent(3, timeout=30)
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), 30)
            await reading_second
        finally:
            for process in (first, second):
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()
            reading_first.cancel()
    assert "Subscribed" in welcome.visible_text and "/subscribe" in help_text.visible_text
    assert alert.visible_text.startswith("🚨 Alert")
    assert sum(m.visible_text.startswith("🚨") for m in fake.sent) == 1
    assert polls_before >= 1
    assert handover < 30, f"handover took {handover:.1f} s"
    print(f"leader handover after SIGKILL: {handover:.1f} s")
    # Only the new leader polled after the kill, and nobody drew a 409 from two pollers.
    assert [c for c in new_polls if c.status == 409] == []
    assert code == 0
    # The follower waited without log spam: one line while it followed, one when it took over.
    assert sum("this one follows" in line for line in second_log) == 1
    assert sum("now leads" in line for line in second_log) == 1
    assert not any("Conflict" in line or "Traceback" in line for line in second_log)


async def test_a_feed_deleted_from_the_config_is_no_longer_polled(settings: Settings) -> None:
    """Review: config feeds stayed active for good once the file stopped listing them."""
    from bot.config import FeedSettings

    listed = FeedSettings(url="https://feeds.example.org/a.xml")
    with_feed = settings.model_copy(
        update={"sources": settings.sources.model_copy(update={"feeds": (listed,)})}
    )
    assert await app.run(with_feed, lines=lines(), out=io.StringIO()) == 0
    async with Store.open(settings.storage.url()) as store:
        await store.sources.add("https://chat.example.org/b.xml", added_by="telegram:7")
        assert [s.url for s in await store.sources.active()] == [
            listed.url,
            "https://chat.example.org/b.xml",
        ]
        # A chat that added a feed the file lists too keeps it when the file drops it.
        also = "https://feeds.example.org/c.xml"
        await store.sources.add(also, added_by="telegram:8")
    also_listed = with_feed.model_copy(
        update={
            "sources": settings.sources.model_copy(
                update={"feeds": (listed, FeedSettings(url="HTTPS://feeds.example.org/c.xml?"))}
            )
        }
    )
    assert await app.run(also_listed, lines=lines(), out=io.StringIO()) == 0
    async with Store.open(settings.storage.url()) as store:
        shared = await store.sources.find(also)
        assert shared is not None and shared.public  # the file's too: for every subscriber
        assert shared.owners == {"config", "telegram:8"}
    assert await app.run(settings, lines=lines(), out=io.StringIO()) == 0
    async with Store.open(settings.storage.url()) as store:
        # The file's feed is gone; the ones a chat added stay, the shared one that chat's own.
        assert [s.url for s in await store.sources.active()] == [
            "https://chat.example.org/b.xml",
            also,
        ]
        shared = await store.sources.find(also)
        assert shared is not None and not shared.public and shared.owners == {"telegram:8"}


@pytest.mark.reliability
@only("postgresql", "instances sharing one PostgreSQL database")
async def test_three_instances_lose_nothing_when_the_leader_is_killed_mid_digest(
    database: str, tmp_path: Path
) -> None:
    # Issue 12: three `newsbot run` on one PostgreSQL database and the loopback Bot API (30
    # msg/s, 1 msg/s per chat, enforced); kill -9 the leader while it sends a digest to 500
    # chats and an alert to all of them is owed.
    import json
    import signal
    from datetime import UTC, datetime, timedelta

    from bot.schema import subscriptions

    from .fake_telegram import FakeTelegram

    token, chats = "123456:TEST-token", [str(5_000 + n) for n in range(500)]
    now = datetime.now(UTC)
    # The digest slot passed two minutes ago: the first leader owes it at once (catch-up).
    prefs = Preferences(digest_at=f"{now - timedelta(minutes=2):%H:%M}")
    async with Store.open(database) as store:
        await store.catalog.add_articles(
            [Article("d1", "Shelling near the border", "Fighting.", "en")]
        )
        await store.catalog.save_verdicts(
            [Verdict("d1", True, 0.6, ("fighting",), Level.DIGEST, ("X",))]
        )
        for chat_id in chats:
            await store.subscriptions.subscribe(ChatRef("telegram", chat_id), "en", prefs)
        async with store.engine.begin() as conn:
            await conn.execute(subscriptions.update().values(created_at=now - timedelta(hours=1)))

    async with FakeTelegram(token=token) as fake:
        logs: dict[str, list[str]] = {}
        readers: list[asyncio.Task[None]] = []

        async def instance(name: str) -> asyncio.subprocess.Process:
            (tmp_path / name / "articles").mkdir(parents=True)
            env = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": token,
                "NEWSBOT_TELEGRAM_API_URL": fake.base_url,
                "NEWSBOT_DATABASE_URL": database,
                "NEWSBOT_ARTICLES": str(tmp_path / name / "articles"),
                "NEWSBOT_DATA_DIR": str(tmp_path / name / "data"),
                "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
            }
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bot", "-v", "--log-format", "json", "run"),
                env=env,
                stdin=DEVNULL,
                stderr=PIPE,
            )
            logs[name] = []
            readers.append(asyncio.create_task(read_lines(process, logs[name])))
            return process

        async def read_lines(process: asyncio.subprocess.Process, into: list[str]) -> None:
            assert process.stderr is not None
            while line := await process.stderr.readline():
                into.append(line.decode())

        async def until(predicate: Any, what: str, seconds: float = 60) -> None:
            deadline = time.monotonic() + seconds
            while not predicate():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.05)

        def leads(name: str) -> bool:
            return any("now leads" in line for line in logs[name])

        processes = {"a": await instance("a")}
        try:
            await until(lambda: leads("a"), "the first instance to lead")
            processes["b"] = await instance("b")
            processes["c"] = await instance("c")
            await until(
                lambda: all(any("follows" in x for x in logs[n]) for n in "bc"), "two followers"
            )
            # An alert for every chat, from an article a follower's folder watcher stored.
            shutil.copy(SEED, tmp_path / "b" / "articles")
            await until(lambda: len(fake.sent) >= 300, "300 messages sent", 90)
            sent_before = len(fake.sent)
            killed_at = fake.clock()
            os.kill(processes["a"].pid, signal.SIGKILL)
            await processes["a"].wait()
            await fake.wait_for_sent(2 * len(chats), timeout=120)
            # Whatever was still owed is sent by now; give a duplicate time to show.
            await asyncio.sleep(2)
            for name in "bc":
                processes[name].send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(processes[n].wait(), 30) for n in "bc"]
        finally:
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await asyncio.gather(*readers, return_exceptions=True)

    assert codes == [0, 0]
    assert sent_before < 2 * len(chats), "the kill came after everything was sent"
    digests = [s.chat_id for s in fake.sent if "Conflict digest" in s.visible_text]
    alerts = [s.chat_id for s in fake.sent if s.visible_text.startswith("🚨")]
    # Every chat got the digest and the alert: none lost.
    assert sorted(set(digests)) == sorted(map(int, chats))
    assert sorted(set(alerts)) == sorted(map(int, chats))
    # At most the messages in flight at the kill went out twice (8 sends run at once).
    duplicates = len(digests) + len(alerts) - 2 * len(chats)
    assert duplicates <= 8, duplicates
    # Which limit a 429 was for, and when, tells a stalled sender's burst from a pacing bug.
    rejected = [
        f"{r.kind} (chat {r.chat_id}, {r.in_window} in the 1 s window)"
        f" {r.time - killed_at:+.2f} s from the kill"
        for r in fake.rejections
    ]
    assert fake.rejected_429 == 0, f"{fake.rejected_kinds}: {rejected}"
    # A new leader took over well within 30 s (its first poll or send after the kill).
    after = [
        c for c in fake.calls if c.time > killed_at and c.method in ("getUpdates", "sendMessage")
    ]
    handover = min(c.time for c in after) - killed_at
    assert handover < 30, handover
    assert sum(leads(n) for n in "bc") == 1
    # One poller at a time: a second getUpdates would have ended the first with 409.
    assert [c for c in fake.calls_to("getUpdates") if c.status == 409] == []
    # Every line is JSON, and every delivery line carries its delivery id, chat and platform.
    records = [json.loads(line) for name in "bc" for line in logs[name] if line.strip()]
    delivered = [r for r in records if r["logger"] == "bot.outbox" and "sent (" in r["message"]]
    assert delivered and all({"delivery_id", "chat", "platform"} <= set(r) for r in delivered)
    assert not any("Traceback" in line or token in line for n in "bc" for line in logs[n])
    print(
        f"3 instances, 500 chats: killed after {sent_before} messages, new leader's first call"
        f" {handover:.1f} s later, {duplicates} duplicates, 0 x 429"
    )


# Twelve distinct events (twelve stories), eleven of them alert-worthy, one digest-level.
EVENTS = (
    (
        "Car bomb kills 9 at a market in Mogadishu",
        "A car bomb exploded at a crowded market in Mogadishu, Somalia, on Monday,"
        " killing 9 people, police said.",
    ),
    (
        "Air strikes hit a hospital in Idlib",
        "Warplanes bombed a hospital in Idlib, Syria, overnight; 14 patients and two"
        " doctors were killed.",
    ),
    (
        "Rebels seize army base near Goma",
        "M23 rebel fighters overran an army base outside Goma, Congo, after two days of"
        " clashes; 31 soldiers died.",
    ),
    (
        "Drones strike Kharkiv power plant",
        "Russian drones struck the power plant of Kharkiv, Ukraine, at dawn, cutting"
        " electricity; 3 workers were killed.",
    ),
    (
        "Peacekeepers ambushed in Mali",
        "Gunmen ambushed a United Nations convoy near Kidal in northern Mali, killing 6"
        " peacekeepers from Chad.",
    ),
    (
        "Paramilitaries shell El Fasher camp",
        "RSF paramilitaries shelled the Zamzam displacement camp near El Fasher, Sudan;"
        " 40 refugees died.",
    ),
    (
        "Houthi missile hits tanker in Red Sea",
        "A Houthi anti-ship missile set the tanker Marlin Luanda ablaze off Aden, Yemen;"
        " the crew of 22 was evacuated.",
    ),
    (
        "Taliban clash with Pakistani troops at border",
        "Afghan Taliban forces exchanged heavy fire with Pakistani troops at the Torkham"
        " crossing; 11 soldiers were killed.",
    ),
    (
        "Boko Haram raid on Borno village",
        "Boko Haram insurgents stormed the village of Mafa in Borno state, Nigeria,"
        " killing 37 farmers and burning homes.",
    ),
    (
        "Israeli tanks advance into Rafah",
        "Israeli tanks pushed into eastern Rafah in the Gaza Strip under heavy artillery"
        " fire; 25 Palestinians were killed.",
    ),
    (
        "Azerbaijani artillery pounds Stepanakert",
        "Azerbaijani artillery pounded Stepanakert in Nagorno-Karabakh during an"
        " offensive; 27 Armenian fighters fell.",
    ),
    (
        "Myanmar junta bombs Sagaing monastery",
        "Myanmar's military junta bombed a monastery in Sagaing region where villagers"
        " sheltered; 17 civilians died.",
    ),
)


def _event_files(folder: Path) -> int:
    """One file per event, then local news read after them (a longer scan), all settled long
    ago; how many files."""
    old = time.time() - 3600
    told = [*EVENTS]
    for number in range(36):
        title = f"Town council {number} approves the budget for {2030 + number}"
        told.append((title, f"{title}: a new library and {number + 3} bus lines were agreed."))
    for number, (title, text) in enumerate(told):
        path = folder / f"{number:02d}.txt"
        path.write_text(f"{title}\n\n{text}\n", encoding="utf-8")
        os.utime(path, (old, old))
    return len(told)


async def _counts(url: str) -> tuple[int, int, int]:
    """Articles, alert-level verdicts and deliveries in the database (read by another engine)."""
    import sqlalchemy as sa

    from bot import db

    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            found = []
            for query in (
                "SELECT COUNT(*) FROM articles",
                "SELECT COUNT(*) FROM verdicts WHERE level = 'alert'",
                "SELECT COUNT(*) FROM deliveries",
            ):
                found.append(int((await conn.execute(sa.text(query))).scalar() or 0))
    except Exception:  # not created yet
        return 0, 0, 0
    finally:
        await engine.dispose()
    return found[0], found[1], found[2]


@pytest.mark.reliability
@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
async def test_articles_stored_by_a_killed_run_are_alerted_after_the_restart(
    settings: Settings, tmp_path: Path
) -> None:
    """Issue 1 of the review: SIGKILL between storing a folder's articles and routing them.

    A real `newsbot run` stores the folder one file at a time and routes the scan once all are
    stored; it is killed as soon as some are in the database, before any alert is owed. The
    restarted process owes every alert-level story to every subscribed chat exactly once.
    """
    url = settings.storage.url()
    threshold = settings.classifier.alert_threshold
    chats = (ChatRef("telegram", "1"), ChatRef("telegram", "2"))
    async with Store.open(url) as store:
        for chat in chats:
            await store.subscriptions.subscribe(chat, "en")
    total = _event_files(settings.articles.folder)
    env = {
        **os.environ,
        "NEWSBOT_ARTICLES": str(settings.articles.folder),
        "NEWSBOT_DATA_DIR": str(settings.storage.data_dir),
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "NEWSBOT_DATABASE_URL": url,
    }
    for name in ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN"):
        env.pop(name, None)
    run = (sys.executable, "-m", "bot", "-v", "--log-format", "json", "run")
    log = tmp_path / "second.log"

    first = await asyncio.create_subprocess_exec(
        *run, env=env, stdin=PIPE, stdout=DEVNULL, stderr=DEVNULL, cwd=str(ROOT)
    )
    try:
        deadline = time.monotonic() + 120
        while (await _counts(url))[0] < 2:
            assert first.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.01)
        first.kill()  # SIGKILL
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    stored, alerts, owed = await _counts(url)
    # Killed in the window: articles and their alert-level verdicts stored, nothing owed yet.
    assert 0 < stored < total and alerts > 0 and owed == 0, (stored, alerts, owed)

    with log.open("wb") as err:
        second = await asyncio.create_subprocess_exec(
            *run, env=env, stdin=PIPE, stdout=DEVNULL, stderr=err, cwd=str(ROOT)
        )
        try:
            assert second.stdin is not None
            deadline = time.monotonic() + 120
            while True:
                rows, expected = await _owed_alerts(url, chats, threshold)
                everything = (await _counts(url))[0] == total
                if everything and all(sorted(rows[chat]) == sorted(expected) for chat in chats):
                    break
                assert second.returncode is None, log.read_text()
                assert time.monotonic() < deadline, (rows, expected, log.read_text())
                await asyncio.sleep(0.1)
            second.stdin.close()  # end of console input: a clean exit
            assert await asyncio.wait_for(second.wait(), 60) == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    assert f"routed {stored} stored articles whose alerts were never owed" in log.read_text()
    # Exactly once: one row per chat and story, none for a story twice.
    rows, expected = await _owed_alerts(url, chats, threshold)
    assert len(expected) == len(EVENTS) - 1  # one story per alert-worthy event
    for chat in chats:
        assert sorted(rows[chat]) == sorted(expected)


async def _owed_alerts(
    url: str, chats: tuple[ChatRef, ...], threshold: float
) -> tuple[dict[ChatRef, list[str]], list[str]]:
    """The alert keys (stories) owed to each chat, and the stories of every stored article of
    the folder that scores at least the alert threshold."""
    import sqlalchemy as sa

    from bot import db

    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            keys: dict[ChatRef, list[str]] = {chat: [] for chat in chats}
            query = "SELECT platform, chat_id, key FROM deliveries WHERE kind = 'alert'"
            for platform, chat_id, key in await conn.execute(sa.text(query)):
                chat = ChatRef(platform, chat_id)
                if chat in keys:
                    keys[chat].append(key)
            query = (
                "SELECT DISTINCT COALESCE(a.story_id, a.id) FROM articles a"
                " JOIN verdicts v ON v.article_id = a.id WHERE v.score >= :threshold"
            )
            result = await conn.execute(sa.text(query), {"threshold": threshold})
            stories = [row[0] for row in result]
    finally:
        await engine.dispose()
    return keys, stories


async def test_a_shutdown_with_a_feed_poll_in_flight_logs_no_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13 of the review: end of input while a feed poll was in flight logged
    `ERROR Job "feed_job …" raised an exception … CancelledError`."""
    import logging

    from bot.config import FeedSettings

    from .feedserver import FeedServer

    polled = asyncio.Event()

    class Hanging(FeedServer):
        async def _answer(self, host: str, path: str, *args: Any) -> None:
            polled.set()
            await super()._answer(host, path, *args)

    server = Hanging(behaviours={"/hang": "hang"})

    async def console() -> AsyncIterator[str]:
        # End of input only once the poll is in flight (its request reached the server).
        await asyncio.wait_for(polled.wait(), 30)
        yield "/help\n"

    caplog.set_level(logging.DEBUG)
    async with server.serving(["127.0.0.1"]) as ports:
        url = f"http://127.0.0.1:{ports['127.0.0.1']}/hang"
        sources = settings.sources.model_copy(
            update={"feeds": (FeedSettings(url=url),), "allow_private": True}
        )
        configured = settings.model_copy(update={"sources": sources})
        assert await app.run(configured, lines=console(), out=io.StringIO()) == 0
    # (The loopback server's own handler, cancelled as it closes, is asyncio's business.)
    ours = [r for r in caplog.records if r.name.startswith(("bot", "apscheduler"))]
    errors = [r for r in ours if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert not any("raised an exception" in r.getMessage() for r in ours)
    said = [r.getMessage() for r in ours if "cancelled" in r.getMessage()]
    assert said == ["shutdown cancelled 1 scheduled jobs in flight"]


async def test_a_scheduled_job_that_fails_still_logs_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quiet on shutdown only: a job's own exception is logged by the scheduler as before."""
    import logging

    from apscheduler.events import EVENT_JOB_ERROR, JobEvent
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    failed = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("feed parser broke")

    def listener(event: JobEvent) -> None:
        failed.set()

    in_flight = app.InFlight()
    scheduler = AsyncIOScheduler()
    scheduler.add_listener(listener, EVENT_JOB_ERROR)
    scheduler.add_job(in_flight.quiet(broken), id="broken")
    caplog.set_level(logging.INFO)
    scheduler.start()
    try:
        await asyncio.wait_for(failed.wait(), 10)  # dispatched after the executor logged
    finally:
        await in_flight.stop(scheduler)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "broken (trigger" in error.getMessage() and "raised an exception" in error.getMessage()
    assert error.exc_info is not None and isinstance(error.exc_info[1], RuntimeError)
