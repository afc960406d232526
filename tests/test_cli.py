import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

from .conftest import ROOT, SEED, SHARED, only

CORPUS = SHARED / "corpus" / "articles.jsonl"


@pytest.fixture
def env(tmp_path: Path, database: str | None) -> dict[str, str]:
    """The CLI's environment: the SQLite file in its data folder, or a PostgreSQL schema."""
    (tmp_path / "articles").mkdir()
    shutil.copy(SEED, tmp_path / "articles")
    return {
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_ARTICLES": str(tmp_path / "articles"),
        "NEWSBOT_DATABASE_URL": database or "",
    }


def store_url(env: dict[str, str]) -> str:
    """The database the commands run with `env` use."""
    return env["NEWSBOT_DATABASE_URL"] or (
        f"sqlite+aiosqlite:///{env['NEWSBOT_DATA_DIR']}/newsbot.sqlite3"
    )


def invoke(env: dict[str, str], *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)


@only("sqlite", "no database: --help")
def test_help_on_every_command(env: dict[str, str]) -> None:
    for command in ("ingest", "classify", "ask", "digest", "run"):
        result = invoke(env, command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_ingest_counts_and_is_idempotent(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok1", "text": "Kämpfe im Osten."}\n{broken\n')
    result = invoke(env, "ingest", str(tmp_path / "articles"), str(bad))
    assert result.exit_code == 0
    assert "new=2 updated=0 duplicate=0 rejected=1" in result.stdout
    assert f"{bad}:2" in result.stderr and "malformed JSON" in result.stderr
    again = invoke(env, "ingest", "--format", "json", str(tmp_path / "articles"))
    assert json.loads(again.stdout) == {"new": 0, "updated": 0, "duplicate": 1, "rejected": 0}


@pytest.mark.reliability
def test_a_record_reusing_an_id_with_other_text_is_a_rejection_naming_its_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Two records of id r1 with different texts: one was dropped as a "duplicate" (review #5)."""
    dup = tmp_path / "dup.jsonl"
    dup.write_text(
        '{"id":"r1","text":"Army shelled the port of Odessa on Monday."}\n'
        '{"id":"r1","text":"Rebels attacked a base in the north of Mali."}\n'
        '{"id":"r1","text":"Army shelled the port of Odessa on Monday."}\n'
    )
    result = invoke(env, "ingest", "--format", "json", str(dup))
    assert result.exit_code == 0
    # The identical third record is a duplicate, as identical content always is.
    assert json.loads(result.stdout) == {"new": 1, "updated": 0, "duplicate": 1, "rejected": 1}
    assert result.stderr.splitlines() == [
        f"rejected {dup}:2: duplicate id 'r1' (first on line 1, with other text)"
    ]
    listed = dup.with_suffix(".json")
    listed.write_text(json.dumps([json.loads(line) for line in dup.read_text().splitlines()]))
    result = invoke(env, "ingest", str(listed))
    assert f"rejected {listed}[1]: duplicate id 'r1' (first on record 0, with other text)" in (
        result.stderr
    )

    import asyncio

    from bot.store import Store

    async def texts() -> list[str]:
        async with Store.open(store_url(env)) as store:
            return [a.text for a in await store.catalog.all_articles()]

    # The first record stands; the refused one never reached the store.
    stored = asyncio.run(texts())
    assert "Army shelled the port of Odessa on Monday." in stored
    assert not any("Mali" in text for text in stored)


def test_ingested_articles_are_not_alerted_by_a_services_routing_sweep(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`ingest` stores, it never alerted: its verdicts count as routed (review 2026-12 #1)."""
    import asyncio
    from datetime import UTC, datetime

    from bot.store import Store

    result = invoke(env, "ingest", str(tmp_path / "articles"))
    assert "new=1" in result.stdout

    async def unrouted() -> list[str]:
        async with Store.open(store_url(env)) as store:
            assert await store.catalog.count_articles() == 1
            since = datetime(2000, 1, 1, tzinfo=UTC)
            return [article.id for article, _ in await store.catalog.unrouted(since)]

    assert asyncio.run(unrouted()) == []


def test_ingest_of_nothing_readable_fails(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = invoke(env, "ingest", str(empty))
    assert result.exit_code == 1 and "empty file" in result.stderr


@only("sqlite", "classify reads no database")
def test_classify_jsonl_in_input_order_without_database(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "in.jsonl"
    records = [
        {
            "id": "w",
            "title": "Rebels shell the city",
            "text": "Heavy fighting and air strikes killed 20 civilians.",
            "lang": "en",
        },
        {
            "id": "s",
            "title": "Chelsea beat PSG",
            "text": "A late goal settled the Champions League tie.",
            "lang": "en",
        },
    ]
    data.write_text("\n".join(json.dumps(r) for r in records))
    env = {**env, "NEWSBOT_DATA_DIR": str(tmp_path / "never")}
    result = invoke(env, "classify", "--format", "jsonl", str(data))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["w", "s"]
    assert set(lines[0]) >= {"id", "conflict", "score", "reasons"}
    assert lines[0]["conflict"] is True and lines[1]["conflict"] is False
    assert 0.0 <= lines[1]["score"] < lines[0]["score"] <= 1.0
    assert not (tmp_path / "never").exists()


def test_ask_json_and_jsonl(env: dict[str, str], tmp_path: Path) -> None:
    invoke(env, "ingest", env["NEWSBOT_ARTICLES"])
    result = invoke(env, "ask", "--format", "json", "who attends from Germany?")
    answer = json.loads(result.stdout)
    assert "Michaelis" in answer["answer"]
    assert set(answer["sources"][0]) == {"id", "title", "date", "url"}
    assert 0.0 <= answer["confidence"] <= 1.0
    seed_id = answer["sources"][0]["id"]
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "Wer vertritt die USA?", "article": seed_id})
        + "\n"
        + json.dumps({"id": "q2", "question": "Who attends from France?"})
        + "\n"
    )
    result = invoke(env, "ask", "--format", "jsonl", "--questions", str(questions))
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["id"] == "q1" and "Sherman" in first["answer"]
    assert second["id"] == "q2" and second["answer"] is None


def test_ask_usage_errors(env: dict[str, str], tmp_path: Path) -> None:
    assert invoke(env, "ask").exit_code == 2
    bad = tmp_path / "q.jsonl"
    bad.write_text("{nope\n")
    result = invoke(env, "ask", "--format", "jsonl", "--questions", str(bad))
    assert result.exit_code == 2 and f"{bad}:1" in result.stderr


def test_digest_prints_flagged_articles(env: dict[str, str]) -> None:
    invoke(env, "ingest", env["NEWSBOT_ARTICLES"])
    result = invoke(env, "digest")
    assert result.exit_code == 0 and "Vertreter der 30 Nato-Staaten" in result.stdout


@only("sqlite", "the config is refused before any database")
def test_bad_config_exits_2_naming_the_key(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[digest]\nmax_items = 0\n")
    result = invoke({**env, "NEWSBOT_CONFIG": str(path)}, "digest")
    assert result.exit_code == 2 and "digest.max_items" in result.stderr


@only("sqlite", "its own unreachable PostgreSQL URL")
def test_unreachable_database_is_a_clear_failure(env: dict[str, str]) -> None:
    result = invoke(
        {**env, "NEWSBOT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "digest"
    )
    assert result.exit_code == 1 and "error:" in result.stderr


def test_run_console_answers_from_a_pipe_and_exits_zero(env: dict[str, str]) -> None:
    # The real command with a real pipe on stdin, as a user would type it.
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="who attends from Germany?\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Andreas Michaelis" in result.stdout
    assert "Source:" in result.stdout


@pytest.mark.skipif(not CORPUS.exists(), reason="research corpus ../shared/corpus not present")
def test_corpus_ingest_twice_and_classify_every_line(env: dict[str, str]) -> None:
    first = invoke(env, "ingest", "--format", "json", str(CORPUS))
    assert json.loads(first.stdout)["new"] == 2029
    second = invoke(env, "ingest", "--format", "json", str(CORPUS))
    assert json.loads(second.stdout)["new"] == 0
    result = invoke(env, "classify", "--format", "jsonl", str(CORPUS))
    assert len(result.stdout.splitlines()) == 2029


def test_train_on_feedback(env: dict[str, str], tmp_path: Path) -> None:
    import asyncio

    from bot.models import Article, ChatRef
    from bot.store import Store

    async def judge() -> None:
        async with Store.open(store_url(env)) as store:
            batch = [
                Article(f"w{i}", f"Air strikes hit town {i}", "Fighting and shelling.", "en")
                for i in range(12)
            ] + [
                Article(f"s{i}", f"Cup final {i} tonight", "The striker scored twice.", "en")
                for i in range(12)
            ]
            await store.catalog.add_articles(batch)
            for article in batch:
                relevant = article.id.startswith("w")
                await store.catalog.add_feedback(article.id, ChatRef("test", "c"), "u", relevant)

    too_few = invoke(env, "train")
    assert too_few.exit_code == 1 and "need at least" in too_few.stderr
    asyncio.run(judge())
    model = tmp_path / "model.json"
    result = invoke(env, "train", "--output", str(model))
    assert result.exit_code == 0 and "trained on 24 articles (12 relevant)" in result.stdout
    from bot.learn import FeedbackModel

    loaded = FeedbackModel.load(model)
    war = Article("x", "Air strikes hit town", "Fighting and shelling.", "en")
    sport = Article("y", "Cup final tonight", "The striker scored twice.", "en")
    assert loaded.predict(war) > loaded.predict(sport)


@pytest.mark.parametrize("command", [("train", "--min-examples", "5"), ("feedback", "export")])
def test_an_output_that_cannot_be_a_file_is_one_line_not_a_traceback(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    """`feedback export --output /nonexistent/dir/x` and `train --output /tmp` gave tracebacks."""
    folder = tmp_path / "out"
    folder.mkdir()
    for output in (folder, tmp_path / "nonexistent" / "dir" / "x"):
        result = newsbot(env, *command, "--output", str(output))
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {output}: "), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["articles", "out"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "folder"),
    [("digest", "/nonexistent"), ("ask", "/nonexistent"), ("run", "/etc/passwd"), ("run", "-")],
)
def test_an_article_folder_that_is_not_there_is_warned_about_once(
    env: dict[str, str], tmp_path: Path, command: str, folder: str
) -> None:
    """NEWSBOT_ARTICLES=/nonexistent digest said "No new conflict-related articles.", no word."""
    folder = folder if folder != "-" else str(tmp_path / "missing")
    args = (command, "who attacked?") if command == "ask" else (command,)
    result = newsbot({**env, "NEWSBOT_ARTICLES": folder}, *args)
    assert result.returncode in (0, 1), result.stderr
    what = "is not a folder" if Path(folder).exists() else "does not exist"
    warnings = [line for line in result.stderr.splitlines() if folder in line]
    assert len(warnings) == 1, result.stderr
    assert f"article folder {folder} {what}" in warnings[0] and "NEWSBOT_ARTICLES" in warnings[0]


def test_questions_without_an_id_or_with_a_repeated_one_are_named(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A line without "id" got an answer without one; a repeated id was accepted silently."""
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "who attends from Germany?"})
        + "\n"
        + json.dumps({"question": "no id"})
        + "\n"
        + json.dumps({"id": "q1", "question": "Wer vertritt die USA?"})
        + "\n"
    )
    result = newsbot(env, "ask", "--format", "jsonl", "--questions", str(questions))
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["q1"]
    assert result.stderr.splitlines() == [
        f"error: {questions}:2: needs an 'id' (a string or a number) to match its answer",
        f"error: {questions}:3: duplicate id 'q1' (first on line 1)",
    ]
    assert result.returncode == 1


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_questions_file_is_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, content: str
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(content)
    result = newsbot(env, "ask", "--format", "jsonl", "--questions", str(questions))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {questions}: no questions (one JSON object a line: id, question)"
    ]


def test_ask_says_i_dont_know_in_the_default_language_for_a_foreign_question(
    env: dict[str, str],
) -> None:
    result = newsbot(env, "ask", "Кто напал на Киев?")
    assert result.stdout.startswith("I don't know"), result.stdout


def test_run_shuts_down_cleanly_on_sigterm(env: dict[str, str]) -> None:
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        stdin=subprocess.PIPE,  # kept open: the service runs until the signal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the digest header
        assert "digest" in first.lower()
        # The usage line: the console chat has started, so the service is fully up.
        while "Ctrl-D quits" not in (line := process.stdout.readline()):
            assert line, "newsbot exited early"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        process.kill()
        process.communicate()
    assert code == 0


def test_status_lists_sources_subscriptions_and_the_ledger(env: dict[str, str]) -> None:
    import asyncio

    from bot.ledger import NoticeOwed
    from bot.models import ChatRef
    from bot.store import Store

    async def prepare() -> None:
        async with Store.open(store_url(env)) as store:
            await store.sources.add(
                "https://feeds.example.org/world.xml?apikey=s3cret", name="World"
            )
            chat = ChatRef("telegram", "42")
            await store.subscriptions.subscribe(chat, "en")
            await store.ledger.enqueue(chat, "a", NoticeOwed("hello"))
            await store.ledger.enqueue(chat, "b", NoticeOwed("gone"))
            rows = await store.ledger.deliveries("pending")
            await store.ledger.mark_failed(rows[-1]["id"], "Forbidden: bot was blocked by the user")

    asyncio.run(prepare())
    result = invoke(env, "status")
    assert result.exit_code == 0
    text = result.stdout
    assert "1. World — last fetch never" in text
    assert "subscriptions: telegram 1" in text
    assert "deliveries: 1 pending" in text and "1 failed" in text
    assert "failed telegram notice: Forbidden: bot was blocked by the user" in text
    # Feed URLs can carry credentials in their query string: never printed.
    assert "s3cret" not in text
    report = json.loads(invoke(env, "status", "--format", "json").stdout)
    assert report["deliveries"]["pending"] == 1 and report["sources"][0]["failures"] == 0


def test_migrate_export_and_import_move_a_deployment(env: dict[str, str], tmp_path: Path) -> None:
    assert invoke(env, "ingest", env["NEWSBOT_ARTICLES"]).exit_code == 0
    migrated = invoke(env, "migrate")
    assert migrated.exit_code == 0 and "database schema at version" in migrated.stdout
    dump = tmp_path / "export.jsonl"
    exported = invoke(env, "export", str(dump))
    assert exported.exit_code == 0 and "1 articles" in exported.stderr
    other = f"sqlite:///{tmp_path / 'moved.sqlite3'}"
    imported = invoke(env, "--db", other, "import", str(dump))
    assert (
        imported.exit_code == 0 and "1 articles, 1 article_sources, 1 verdicts" in imported.stdout
    )
    again = invoke(env, "--db", other, "import", str(dump))
    assert again.exit_code == 1 and "not empty" in again.stderr
    asked = invoke(env, "--db", other, "ask", "--format", "json", "wer vertritt die USA?")
    assert "Sherman" in json.loads(asked.stdout)["answer"]


def newsbot(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real `newsbot` process, stdin closed, as CI and systemd run it."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "COLUMNS": "300"},
        timeout=timeout,
        check=False,
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("toml", "args", "key"),
    [
        ("", ("--db", "mysql://scott:tiger@db.example/news", "digest"), "storage.database_url"),
        ("", ("--db", "garbage", "run"), "storage.database_url"),
        ('[telegram]\nmode = "webhook"\n', ("run",), "telegram.webhook_url"),
        ('[articles]\nlanguages = ["xx"]\n', ("classify", "."), "articles.languages"),
        ('[digest]\nmax_items = "20"\n', ("digest",), "digest.max_items"),
        ("[sources]\nfull_text = 1\n", ("run",), "sources.full_text"),
        ("[digest]\ncatch_up_hours = 1e300\n", ("run",), "digest.catch_up_hours"),
        ("[digest]\ncatch_up_hours = 1e300\n", ("status",), "digest.catch_up_hours"),
        ("[articles]\nsettle_seconds = 1e300\n", ("run",), "articles.settle_seconds"),
        ("[delivery]\nretention_days = 100000000\n", ("digest",), "delivery.retention_days"),
        ("[sources]\ntotal_timeout = 1e300\n", ("run",), "sources.total_timeout"),
        # Two bad keys: still one line, naming the first in full and the second by name.
        ('[digest]\nat = "25:99"\ntimezone = "Mars/Olympus"\n', ("run",), "digest.timezone"),
        # Review defect 11: a host part in a SQLite URL was exit 1 with SQLAlchemy's message.
        ('[storage]\ndatabase_url = "sqlite://relative.db"\n', ("digest",), "storage.database_url"),
        ("", ("--db", "sqlite://relative.db", "run"), "storage.database_url"),
    ],
    ids=[
        "mysql",
        "garbage-url",
        "webhook-without-url",
        "language",
        "quoted-int",
        "int-bool",
        "huge-catch-up-run",
        "huge-catch-up-status",
        "huge-settle",
        "huge-retention",
        "huge-timeout",
        "two-bad-keys",
        "sqlite-two-slashes",
        "sqlite-two-slashes-flag",
    ],
)
@only("sqlite", "the config is refused before any database")
def test_bad_configuration_is_one_line_naming_the_key_and_exit_2(
    env: dict[str, str], tmp_path: Path, toml: str, args: tuple[str, ...], key: str
) -> None:
    """Issue 11 #23: each of these escaped as a traceback with exit 1, or was accepted."""
    path = tmp_path / "c.toml"
    path.write_text(toml)
    result = newsbot({**env, "NEWSBOT_CONFIG": str(path), "TELEGRAM_BOT_TOKEN": "1:x"}, *args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("config error:") and key in line
    assert "tiger" not in line  # a database password is not echoed


@pytest.mark.reliability
@only("sqlite", "the config is refused before any database")
def test_an_empty_articles_folder_is_a_config_error(env: dict[str, str], tmp_path: Path) -> None:
    """Review defect 6: `folder = ""` is Path("."), and `digest` read the working directory."""
    work = tmp_path / "work"
    (work / "deep").mkdir(parents=True)
    (work / "deep" / "stray.jsonl").write_text('{"id": "x"}\n')
    (work / "c.toml").write_text('[articles]\nfolder = ""\n')
    # NEWSBOT_ARTICLES would override the file's key: this is the file's empty value alone.
    full_env = {
        **os.environ,
        **env,
        "NEWSBOT_CONFIG": str(work / "c.toml"),
        "PYTHONPATH": str(ROOT),
    }
    del full_env["NEWSBOT_ARTICLES"]
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", "c.toml", "digest"],
        cwd=work,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("config error:") and "articles.folder" in line
    assert "stray" not in result.stdout + result.stderr


@only("sqlite", "the data folder is checked at load where it holds the SQLite file")
@pytest.mark.parametrize("data_dir", ["/etc/passwd", "/proc/nope", "/etc/passwd/sub"])
@pytest.mark.parametrize("command", ["run", "digest"])
def test_a_data_dir_that_is_a_file_or_cannot_be_made_is_a_config_error(
    env: dict[str, str], data_dir: str, command: str
) -> None:
    """NEWSBOT_DATA_DIR=/etc/passwd gave `error: FileExistsError: …`, exit 1, naming nothing."""
    result = newsbot({**env, "NEWSBOT_DATA_DIR": data_dir}, command)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("config error: environment variable NEWSBOT_DATA_DIR: ")
    assert "storage.data_dir" in line and data_dir in line
    assert not Path("/proc/nope").exists()


@pytest.mark.reliability
@pytest.mark.parametrize("stdin", ["devnull", "closed-pipe", "closed-fd"])
def test_run_console_exits_zero_at_end_of_input_from_anything(
    env: dict[str, str], stdin: str
) -> None:
    """Issue 11 #21: `newsbot run < /dev/null` never exited (epoll refuses /dev/null)."""
    command = [sys.executable, "-m", "bot", "run"]
    full_env = {**os.environ, **env}
    if stdin == "devnull":
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
        )
    elif stdin == "closed-pipe":
        read_end, write_end = os.pipe()
        os.close(write_end)  # the writer went away before saying anything
        process = subprocess.Popen(
            command,
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
        )
        os.close(read_end)
    else:
        process = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 0<&-', *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
        )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Conflict digest" in out and "Type a question or /help; Ctrl-D quits." in out
    assert "Error" not in err and "Traceback" not in err


@pytest.mark.reliability
def test_ingest_names_each_rejection_once(env: dict[str, str], tmp_path: Path) -> None:
    """Issue 11 #24: each rejection was printed twice (the job's log line and the command's)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok1", "text": "Kämpfe im Osten."}\n{broken\n')
    result = newsbot(env, "ingest", str(bad))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("malformed JSON") == 1
    assert result.stderr.splitlines()[0].startswith(f"rejected {bad}:2")


@pytest.mark.parametrize("command", ["ingest", "classify"])
def test_ingest_and_classify_reject_a_fifo_and_a_device_and_read_the_good_file(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """`ingest ok.txt pipe.txt` hung; a link to /dev/zero grew to 2 GB in 8 s."""
    good = tmp_path / "ok.txt"
    good.write_text("Heavy fighting continued in the east of the country on Sunday.")
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    result = newsbot(env, command, str(good), str(pipe), str(zero), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"rejected {pipe}: not a regular file (FIFO, device or socket); not read",
        f"rejected {zero}: not a regular file (FIFO, device or socket); not read",
    ]
    assert ("new=1" if command == "ingest" else "Heavy fighting") in result.stdout


@pytest.mark.reliability
def test_ask_and_digest_on_a_fresh_clone_read_the_article_folder(env: dict[str, str]) -> None:
    """Issue 11 #24: without a prior `ingest` they answered "I don't know" beside the seed."""
    answer = invoke(env, "ask", "--format", "json", "who attends from Germany?")
    assert answer.exit_code == 0, answer.stderr
    assert "Michaelis" in json.loads(answer.stdout)["answer"]
    fresh = {**env, "NEWSBOT_DATA_DIR": str(Path(env["NEWSBOT_DATA_DIR"]) / "other")}
    digest = invoke(fresh, "digest")
    assert digest.exit_code == 0 and "Vertreter der 30 Nato-Staaten" in digest.stdout


@pytest.mark.reliability
@only("sqlite", "refused before any database")
def test_an_empty_question_is_a_usage_error(env: dict[str, str]) -> None:
    for question in ("", "   "):
        result = invoke(env, "ask", question)
        assert result.exit_code == 2 and "the QUESTION is empty" in result.stderr


@pytest.mark.reliability
def test_one_malformed_questions_line_is_named_and_the_rest_answered(
    env: dict[str, str], tmp_path: Path
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "who attends from Germany?"})
        + "\n{nope\n"
        + json.dumps({"id": "q3", "question": "Wer vertritt die USA?"})
        + "\n"
        + json.dumps({"id": "q4", "question": 7})
        + "\n"
    )
    result = invoke(env, "ask", "--format", "jsonl", "--questions", str(questions))
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["q1", "q3"]
    assert "Michaelis" in result.stdout and "Sherman" in result.stdout
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {questions}:2: ")
    assert errors[1] == f"error: {questions}:4: needs a string field 'question'"
    assert result.exit_code == 1  # some input could not be used


@pytest.mark.reliability
def test_the_readme_example_is_exactly_what_the_bot_prints(env: dict[str, str]) -> None:
    """Issue 11 #24: the Quick start transcript had drifted from the real output."""
    command = "$ printf 'who attends from Germany?\\n' | .venv/bin/newsbot run\n"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = readme.split(command, 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        input="who attends from Germany?\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Byte for byte, trailing blank line included (the console ends an answer with one).
    assert result.stdout == expected


def _read_until(
    fd: int, buffer: bytearray, marker: bytes, count: int = 1, timeout: float = 60
) -> bool:
    """Read the terminal's output until `marker` was seen `count` times (or `timeout` passed)."""
    import select

    deadline = time.monotonic() + timeout
    while buffer.count(marker) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], min(1.0, timeout))
        if ready:
            try:
                buffer.extend(os.read(fd, 65536))
            except OSError:  # the process closed the terminal
                break
    return buffer.count(marker) >= count


@pytest.mark.reliability
def test_run_console_in_a_terminal_has_line_editing_and_history(env: dict[str, str]) -> None:
    """Issue 11 #24: in a terminal, ↑ recalls the last question (readline), Ctrl-D quits."""
    import pty

    terminal, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        stdin=child,
        stdout=child,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "TERM": "xterm"},
    )
    os.close(child)
    seen = bytearray()
    answer = "Staatssekretär Andreas Michaelis\r\n".encode()
    try:
        assert _read_until(terminal, seen, b"Ctrl-D quits.")
        os.write(terminal, b"who attends from Germany?\r")
        assert _read_until(terminal, seen, answer)
        os.write(terminal, b"\x1b[A\r")  # arrow up, Enter: the same question again
        assert _read_until(terminal, seen, answer, count=2), seen.decode(errors="replace")
        os.write(terminal, b"\x04")  # Ctrl-D
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.communicate()
        os.close(terminal)


def test_feedback_import_counts_unknown_ids_and_export_round_trips(
    env: dict[str, str], tmp_path: Path
) -> None:
    stored = tmp_path / "stored.jsonl"
    stored.write_text(
        '{"id": "a1", "text": "Luftangriffe auf Aleppo: dutzende Tote."}\n'
        '{"id": "a2", "text": "A late goal settled the Champions League tie."}\n'
    )
    assert invoke(env, "ingest", str(stored)).exit_code == 0
    judged = tmp_path / "judged.jsonl"
    judged.write_text(
        '{"id": "a1", "relevant": true}\n'
        '{"id": "a2", "relevant": true}\n'
        '{"id": "nope", "relevant": false}\n'
        '{"id": "a2", "relevant": "maybe"}\n'
        '{"id": "a2", "relevant": false}\n'
    )
    result = invoke(env, "feedback", "import", str(judged))
    assert result.exit_code == 0
    assert "imported=2 unknown=1 malformed=1" in result.stdout
    assert "unknown article id: nope" in result.stderr and f"{judged}:4" in result.stderr
    exported = invoke(env, "feedback", "export")
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    # The later line for a2 wins, as a changed vote does.
    assert sorted((r["id"], r["relevant"]) for r in rows) == [("a1", True), ("a2", False)]
    back = tmp_path / "back.jsonl"
    assert invoke(env, "feedback", "export", "--output", str(back)).exit_code == 0
    again = invoke(env, "feedback", "import", str(back))
    assert "imported=2 unknown=0 malformed=0" in again.stdout
    assert len(invoke(env, "feedback", "export").stdout.splitlines()) == 2


def test_feedback_import_of_only_unknown_ids_fails(env: dict[str, str], tmp_path: Path) -> None:
    judged = tmp_path / "judged.jsonl"
    judged.write_text('{"id": "nope", "relevant": true}\n')
    result = invoke(env, "feedback", "import", str(judged))
    assert result.exit_code == 1 and "imported=0 unknown=1" in result.stdout


@pytest.mark.reliability
def test_ctrl_c_in_a_terminal_exits_zero_and_gives_the_terminal_back(env: dict[str, str]) -> None:
    """readline turns echo and line mode off while it waits; Ctrl-C ends us in that state."""
    import pty
    import termios

    setsid = shutil.which("setsid")
    if setsid is None:
        pytest.skip("needs util-linux setsid to give the bot a controlling terminal")
    terminal, child = pty.openpty()
    modes = termios.ICANON | termios.ECHO
    before = termios.tcgetattr(child)[3] & modes
    process = subprocess.Popen(
        # As in a shell: this terminal controls the bot, so Ctrl-C on it is SIGINT.
        [setsid, "--ctty", sys.executable, "-m", "bot", "run"],
        stdin=child,
        stdout=child,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "TERM": "xterm"},
    )
    seen = bytearray()
    try:
        assert _read_until(terminal, seen, b"Ctrl-D quits.")
        # Wait (reading output meanwhile) until readline has switched echo and line mode off.
        deadline = time.monotonic() + 30
        while termios.tcgetattr(child)[3] & modes and time.monotonic() < deadline:
            _read_until(terminal, seen, b"\0", timeout=0.1)
        assert termios.tcgetattr(child)[3] & modes == 0
        os.write(terminal, b"\x03")  # Ctrl-C
        assert process.wait(timeout=30) == 0
        assert termios.tcgetattr(child)[3] & modes == before
    finally:
        process.kill()
        process.communicate()
        os.close(child)
        os.close(terminal)


def test_ask_reads_the_folder_as_the_service_does(env: dict[str, str]) -> None:
    """Review: `ask` stored folder files by content hash, `run` by path: an edit became new."""
    import asyncio

    from bot.store import Store

    assert invoke(env, "ask", "--format", "json", "wer vertritt die USA?").exit_code == 0
    seed = Path(env["NEWSBOT_ARTICLES"]) / "nato-russland-rat-2022-01.txt"
    seed.write_text(seed.read_text(encoding="utf-8").replace("Wendy Sherman", "Jane Doe"))
    os.utime(seed, (1, 1))  # settled long ago
    assert invoke(env, "digest").exit_code == 0

    async def stored() -> list[tuple[str, bool]]:
        async with Store.open(store_url(env)) as store:
            return [(a.id, "Jane Doe" in a.text) for a in await store.catalog.all_articles()]

    # One article, by its path, now with the edited text: updated, not added.
    assert asyncio.run(stored()) == [("nato-russland-rat-2022-01.txt", True)]


@pytest.mark.reliability
def test_an_operator_port_in_use_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    """Review: a taken ops port exited 1 with `OSError`, and systemd restarted it forever."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = newsbot({**env, "NEWSBOT_OPS_PORT": str(port)}, "run")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ops.http_host/http_port: cannot listen on 127.0.0.1:")


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["migrate", "status", "export", "digest", "run"])
@only("sqlite", "writes the SQLite file with sqlite3 (test_transfer has SchemaTooNew on both)")
def test_a_database_newer_than_the_code_is_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """SchemaTooNew came out as a traceback and exit 1 from every command."""
    import sqlite3

    assert newsbot(env, "migrate").returncode == 0
    path = tmp_path / "data" / "newsbot.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("insert into schema_version values (99, '2030-01-01')")
    args = [command, str(tmp_path / "out.jsonl")] if command == "export" else [command]
    result = newsbot(env, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "schema version 99" in lines[0], lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["import", "feedback"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """Random bytes for `import` / `feedback import` ended in a UnicodeDecodeError traceback."""
    junk = tmp_path / "rnd.bin"
    junk.write_bytes(b"\x00\xf7\xfe" + bytes(range(256)) * 4)
    args = ["feedback", "import", str(junk)] if command == "feedback" else ["import", str(junk)]
    result = newsbot(env, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(junk) in lines[0] and "not UTF-8" in lines[0], lines


@only("sqlite", "no database: --help")
def test_help_shows_flags_as_flags_and_docstrings_as_paragraphs(env: dict[str, str]) -> None:
    """`-v` was shown as `<int> [default: 0]` (`-v 2` fails); `run --help` broke mid-sentence."""
    top = invoke({**env, "COLUMNS": "200"}, "--help").output
    verbose = next(line for line in top.splitlines() if "--verbose" in line)
    assert "<int>" not in verbose and "default" not in verbose
    version = next(line for line in top.splitlines() if "--version" in line)
    assert "<bool>" not in version
    # `--help` itself was `--help <bool>` in every command's help.
    for command in ((), ("ingest",), ("feedback",), ("feedback", "export"), ("run",)):
        shown = invoke({**env, "COLUMNS": "200"}, *command, "--help").output
        [help_line] = [line for line in shown.splitlines() if "--help" in line]
        assert "<bool>" not in help_line and "Show this message" in help_line, help_line
    run = invoke({**env, "COLUMNS": "200"}, "run", "--help").output
    assert "it prints the current digest, then reads commands" in run


@pytest.mark.parametrize("command", ["status", "export"])
@only("sqlite", "a missing SQLite file (a PostgreSQL database is never created)")
def test_read_only_commands_refuse_a_database_that_is_not_there(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    """`status` on a mistyped path reported an empty deployment and created the file."""
    missing = tmp_path / "nowhere" / "x.sqlite3"
    result = invoke(env, "--db", f"sqlite:///{missing}", command)
    assert result.exit_code == 1
    assert f"no database at {missing}" in result.stderr
    assert not missing.exists() and not missing.parent.exists()


HOSTILE = (
    "Soldaten \x1b]0;pwned\x07\x1b[2J marschieren an der Grenze auf.\x9b31m Die Armee hat 5000 "
    "Soldaten an die Grenze verlegt, sagte der Minister.\x1bPq#0\x1b\\ Bell\x07 und\r Ende.\n"
)


@pytest.mark.reliability
@only("sqlite", "terminal output, not the store")
def test_no_terminal_control_sequence_from_an_article_reaches_the_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Review defect 7: an article's OSC/CSI retitled and cleared the operator's terminal."""
    folder = Path(env["NEWSBOT_ARTICLES"])
    (folder / SEED.name).unlink()  # the answers come from the hostile article alone
    (folder / "ansi.txt").write_text(HOSTILE, encoding="utf-8")
    full_env = {**os.environ, **env, "COLUMNS": "300"}
    outputs = []
    for args, stdin in (
        (("run",), "wie viele Soldaten?\n"),
        (("digest",), ""),
        (("ask", "wie viele Soldaten?"), ""),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "bot", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    run, digest, ask = outputs
    assert "Soldaten  marschieren" in run and "Soldaten  marschieren" in digest
    assert "5000" in ask
    for output in outputs:
        controls = {char for char in output if char not in "\n\t" and not char.isprintable()}
        assert not controls, (controls, output)
        assert "]0;pwned" not in output and "[2J" not in output
