"""Tests for the entry point's `classify` and `ask` fast paths: same output, fewer imports."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner, Result

from bot import cli, config, entry, lemmas, remembered, schema
from bot.cli import app

from .conftest import ROOT, SEED

HEAVY = ("typer", "rich", "pydantic", "click", "numpy", "sqlalchemy", "httpx")


def _value_options(command: typer.core.TyperCommand | TyperGroup) -> dict[str, str]:
    """Flag -> parameter name of the options of `command` that take a value."""
    return {
        flag: param.name or ""
        for param in command.params
        if isinstance(param, TyperOption) and not param.is_flag and not param.count
        for flag in param.opts
    }


def test_copied_constants_match_their_sources() -> None:
    assert remembered.DEFAULT_CONFIG_PATH == config.DEFAULT_CONFIG_PATH
    assert remembered.SECRET_VARIABLES == config.SECRET_VARIABLES
    assert len(schema.MIGRATIONS) == entry.SCHEMA_VERSION
    assert remembered.cache_file().parent == lemmas.cache_dir()
    assert {"highlight": cli.out._highlight, "soft_wrap": cli.out.soft_wrap} == entry.OUT_CONSOLE


def test_option_tables_match_the_typer_app() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    # The fast paths know a subset of the global options (the rest goes to bot.cli) ...
    assert entry.GLOBAL_OPTIONS.items() <= _value_options(group).items()
    # ... and every option of their commands, so none is mistaken for an argument.
    for name, table in entry.COMMAND_OPTIONS.items():
        command = group.commands[name]
        assert isinstance(command, typer.core.TyperCommand)
        assert table == _value_options(command)


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSBOT_CONFIG", str(ROOT / "config" / "newsbot.toml"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A settings cache of the test's own, in this process (the lemma tables stay put)."""
    path = tmp_path / "cache" / "settings.json"
    monkeypatch.setattr(remembered, "cache_file", lambda: path)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "a.jsonl").write_text(
        '{"id": "k1", "text": "Luftangriffe auf Aleppo: dutzende Tote."}\n'
        '{"id": "k2", "text": "A late goal settled the Champions League tie."}\n{broken\n',
        encoding="utf-8",
    )
    return [str(SEED), str(tmp_path / "a.jsonl")]


def full(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_classify_fast_path_prints_what_the_full_command_prints(
    inputs: list[str], fmt: str, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not validated by bot.cli yet: the fast path leaves it to the full command.
    assert entry.classify_fast(["classify", "--format", fmt, *inputs]) is None
    slow = full("classify", "--format", fmt, *inputs)
    assert slow.exit_code == 0
    assert entry.classify_fast(["classify", "--format", fmt, *inputs]) == 0
    fast = capsys.readouterr()
    assert fast.out == slow.stdout and len(fast.out.splitlines()) == 3
    assert "a.jsonl:3" in fast.err and "malformed JSON" in fast.err


def test_anything_unusual_goes_to_the_full_command(
    tmp_path: Path, inputs: list[str], cache: Path
) -> None:
    assert full("classify", *inputs).exit_code == 0
    assert entry.classify_fast(["classify", *inputs]) == 0
    for argv in (
        ["classify", "--help"],
        ["-v", "classify", *inputs],
        ["--log-format", "json", "classify", *inputs],
        ["ingest", *inputs],
        ["classify", "--format", "json", *inputs],
        ["classify", "--frmat", "jsonl", *inputs],
        ["classify", "-fjsonl", *inputs],
        ["classify", "--format"],
        ["classify"],
        ["ask", "--help"],
        ["ask", "--article", "x"],
        ["ask", "one", "two"],
        ["ask", "  "],
    ):
        assert entry.classify_fast(argv) is None and entry.ask_fast(argv) is None, argv
    # A config bot.cli refuses is never remembered: each run gets its one-line error.
    zone = tmp_path / "zone.toml"
    zone.write_text('[digest]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    for _ in range(2):
        assert entry.classify_fast(["--config", str(zone), "classify", *inputs]) is None
        result = full("--config", str(zone), "classify", *inputs)
        assert result.exit_code == 2 and "digest.timezone" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_an_edited_config_or_environment_is_validated_again(
    tmp_path: Path, inputs: list[str], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "newsbot.toml"
    cfg.write_text("[classifier]\nalert_threshold = 0.9\n", encoding="utf-8")
    assert full("-c", str(cfg), "classify", *inputs).exit_code == 0
    assert entry.classify_fast(["-c", str(cfg), "classify", *inputs]) == 0
    monkeypatch.setenv("NEWSBOT_SENDERS", "some")
    assert entry.classify_fast(["-c", str(cfg), "classify", *inputs]) is None
    assert full("-c", str(cfg), "classify", *inputs).exit_code == 2
    monkeypatch.delenv("NEWSBOT_SENDERS")
    cfg.write_text("[classifier]\nalert_threshold = 0.2\n", encoding="utf-8")
    assert entry.classify_fast(["-c", str(cfg), "classify", *inputs]) is None
    assert full("-c", str(cfg), "classify", *inputs).exit_code == 2
    # Half a Slack set-up is a config error: a secret's presence counts (never its value).
    cfg.write_text("", encoding="utf-8")
    assert full("-c", str(cfg), "classify", *inputs).exit_code == 0
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-secret")
    assert entry.classify_fast(["-c", str(cfg), "classify", *inputs]) is None
    assert full("-c", str(cfg), "classify", *inputs).exit_code == 2
    assert "xapp-secret" not in cache.read_text(encoding="utf-8")
    assert cache.stat().st_mode & 0o077 == 0  # private, like the lemma tables beside it


def test_classify_fast_path_applies_a_configured_feedback_model_like_the_full_command(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.learn import train
    from bot.models import Article

    # Users who do not want the army's civil work: a learnt model turns these verdicts.
    def civil(i: int, place: str) -> Article:
        task = ("flood relief", "snow clearing", "bridge repairs")[i % 3]
        return Article(
            id=f"a-{place}-{i}",
            title=f"Army helps with {task} in {place}",
            text="Soldiers worked through the night, the town council said.",
            lang="en",
        )

    alerts = [
        Article(
            id=f"w-{i}", title=f"Air strikes kill {i + 3} soldiers", text="Shelling.", lang="en"
        )
        for i in range(12)
    ]
    examples = [(civil(i, p), False) for p in ("Oslo", "Riga", "Prague") for i in range(6)]
    model = tmp_path / "model.json"
    train(examples + [(a, True) for a in alerts]).install(model)
    cfg = tmp_path / "newsbot.toml"
    cfg.write_text(f'[classifier]\nfeedback_model = "{model}"\n', encoding="utf-8")
    feed = tmp_path / "in.jsonl"
    feed.write_text(
        '{"id": "n1", "title": "Army helps with flood relief in Lisbon", '
        '"text": "Soldiers worked through the night, the town council said."}\n'
        '{"id": "n2", "title": "Air strikes kill 40 soldiers", "text": "Shelling."}\n',
        encoding="utf-8",
    )
    assert full("classify", "--format", "jsonl", str(feed)).exit_code == 0
    assert entry.classify_fast(["classify", "--format", "jsonl", str(feed)]) == 0
    without = capsys.readouterr().out
    slow = full("-c", str(cfg), "classify", "--format", "jsonl", str(feed))
    assert slow.exit_code == 0
    assert entry.classify_fast(["-c", str(cfg), "classify", "--format", "jsonl", str(feed)]) == 0
    fast = capsys.readouterr().out
    assert fast == slow.stdout
    assert '"id": "n1", "conflict": true' in without
    assert '"id": "n1", "conflict": false' in fast and '"id": "n2", "conflict": true' in fast


# --- ask ------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store holding the seed article, with an empty article folder."""
    (tmp_path / "articles").mkdir()
    monkeypatch.setenv("NEWSBOT_ARTICLES", str(tmp_path / "articles"))
    monkeypatch.setenv("NEWSBOT_DATA_DIR", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'data' / 'newsbot.sqlite3'}"
    assert full("--db", url, "ingest", str(SEED)).exit_code == 0
    return url


def _questions(tmp_path: Path, seed_id: str) -> Path:
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "Wer vertritt die USA?", "article": seed_id})
        + "\n\n"
        + json.dumps({"id": "q2", "question": "Who attends from France?"})
        + "\n"
        + json.dumps({"id": 3, "question": "who attends from Germany?"})
        + "\n",
        encoding="utf-8",
    )
    return questions


def test_ask_fast_path_prints_what_the_full_command_prints(
    store: str, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = ["--db", store, "ask", "--format", "json", "who attends from Germany?"]
    slow = full(*single)
    assert slow.exit_code == 0 and "Michaelis" in slow.stdout
    assert entry.ask_fast(single) == 0
    assert capsys.readouterr().out == slow.stdout
    seed_id = json.loads(slow.stdout)["sources"][0]["id"]
    for argv in (
        ["--db", store, "ask", "-f", "jsonl", "-q", str(_questions(tmp_path, seed_id))],
        ["--db", store, "ask", "who attends from Germany?"],
        ["--db", store, "ask", "--article", seed_id, "Wer vertritt die USA?", "--format=text"],
        ["--db", store, "ask", "--", "Who attends from France?"],
    ):
        slow = full(*argv)
        assert slow.exit_code == 0
        assert entry.ask_fast(argv) == 0, argv
        assert capsys.readouterr().out == slow.stdout, argv
    assert "Sherman" in slow.stdout or "know" in slow.stdout


def test_ask_fast_path_answers_over_an_unchanged_article_folder(
    store: str, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default set-up: the seed in the article folder, read by an earlier command."""
    shutil.copy(SEED, tmp_path / "articles" / SEED.name)
    argv = ["--db", store, "ask", "--format", "json", "who attends from Germany?"]
    first = full(*argv)  # reads the folder: the file is a second source of the stored seed
    assert first.exit_code == 0 and "Michaelis" in first.stdout
    slow = full(*argv)
    assert entry.ask_fast(argv) == 0
    assert capsys.readouterr().out == slow.stdout == first.stdout


def test_another_folders_files_neither_slow_ask_down_nor_are_swept_by_it(
    store: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files another folder stored (another directory, review defect 1) are not this folder's:
    the fast path still answers, and the full command's sweep leaves them stored."""
    argv = ["--db", store, "ask", "--format", "json", "who attends from Germany?"]
    other = tmp_path / "elsewhere"
    (other / "articles").mkdir(parents=True)
    (other / "articles" / "b1.txt").write_text("Truppen beschossen die Stadt.\n", encoding="utf-8")
    monkeypatch.delenv("NEWSBOT_ARTICLES")  # `articles`, in the working directory
    monkeypatch.chdir(other)
    assert full(*argv).exit_code == 0
    monkeypatch.chdir(tmp_path)  # the store's own `articles/`, spelt the same
    assert full(*argv).exit_code == 0
    assert entry.ask_fast(argv) == 0
    database = store.removeprefix("sqlite:///")
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM articles WHERE id = 'b1.txt'").fetchone() == (1,)


def test_ask_leaves_warnings_migrations_and_the_folder_to_the_full_command(
    store: str, cache: Path, tmp_path: Path
) -> None:
    argv = ["--db", store, "ask", "--format", "json", "who attends from Germany?"]
    assert full(*argv).exit_code == 0
    # An article that is not stored: bot.cli warns and exits 1.
    assert entry.ask_fast([*argv[:3], "--article", "nope", *argv[3:]]) is None
    # A questions line without an id, or with a repeated one: bot.cli names the line.
    for lines in (
        '{"question": "who?"}\n',
        '{"id": 1, "question": "a?"}\n{"id": 1, "question": "b?"}\n',
    ):
        batch = tmp_path / "batch.jsonl"
        batch.write_text(lines, encoding="utf-8")
        assert entry.ask_fast([*argv[:3], "--format", "jsonl", "-q", str(batch)]) is None
    # A new file in the article folder would be read first.
    own = tmp_path / "articles" / "own.txt"
    own.write_text("Kämpfe im Osten\n\nArtillerie beschoss die Stadt.\n", encoding="utf-8")
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    # Once stored as it is, reading it again would change nothing: the fast path answers.
    assert entry.ask_fast(argv) == 0
    # An edited file would be stored again first; a file the reader rejects, reported.
    own.write_text("Kämpfe im Westen\n\nArtillerie beschoss die Stadt.\n", encoding="utf-8")
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    bad = tmp_path / "articles" / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert entry.ask_fast(argv) is None
    bad.unlink()
    # The same text as a stored article, in a second file: linked to it first.
    (tmp_path / "articles" / "copy.txt").write_text(own.read_text("utf-8"), encoding="utf-8")
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    assert entry.ask_fast(argv) == 0
    (tmp_path / "articles" / "copy.txt").unlink()
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    own.unlink()
    # ... and its article swept from the store once the file is gone.
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    assert entry.ask_fast(argv) == 0
    # A store from an older newsbot is migrated first.
    database = store.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = ?", (entry.SCHEMA_VERSION,))
    conn.close()
    assert entry.ask_fast(argv) is None
    assert full(*argv).exit_code == 0
    assert entry.ask_fast(argv) == 0
    # No database at all: bot.cli creates it (and answers from the folder).
    missing = ["--db", f"sqlite:///{tmp_path / 'other.sqlite3'}", *argv[2:]]
    assert full("--db", missing[1], "classify", str(SEED)).exit_code == 0  # validates the config
    assert entry.ask_fast(missing) is None


def _run(tmp_path: Path, module: str, args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    return done.returncode, done.stdout, done.stderr


def test_the_console_script_behaves_as_the_full_command_line(store: str, tmp_path: Path) -> None:
    """Help, bad options, config errors, an empty question and a missing database: the same
    texts and exit codes from the entry point (fast paths tried first) as from bot.cli."""
    zone = tmp_path / "zone.toml"
    zone.write_text('[digest]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    cases = [
        ["ask", "--help"],
        ["classify", "--help"],
        ["--db", store, "ask", "--frmat", "json", "who?"],
        ["--db", store, "ask", "--format", "yaml", "who?"],
        ["--db", store, "ask"],
        ["--db", store, "ask", "   "],
        ["-c", str(zone), "--db", store, "ask", "who attends?"],
        ["-c", str(zone), "classify", str(SEED)],
        ["--db", "mysql://x/y", "ask", "who attends?"],
        # bot.cli validates the config first, then the fast path answers.
        ["--db", store, "ask", "--format", "json", "who attends from Germany?"],
        ["--db", store, "ask", "Wer vertritt die USA?"],
    ]
    for args in cases:
        slow = _run(tmp_path, "bot.cli", args)
        fast = _run(tmp_path, "bot.entry", args)
        assert fast == slow, args
    assert _run(tmp_path, "bot.cli", cases[6])[0] == 2
    assert len(_run(tmp_path, "bot.cli", cases[6])[2].strip().splitlines()) == 1
    # A missing database (with a validated config): both create it and answer alike.
    one = ["--db", f"sqlite:///{tmp_path / 'one.sqlite3'}", "ask", "-f", "json", "who attends?"]
    two = ["--db", f"sqlite:///{tmp_path / 'two.sqlite3'}", *one[2:]]
    assert _run(tmp_path, "bot.cli", [*one[:2], "classify", str(SEED)])[0] == 0
    assert _run(tmp_path, "bot.entry", one) == _run(tmp_path, "bot.cli", two)
    assert (tmp_path / "one.sqlite3").is_file()


def test_ask_start_up_imports_no_cli_settings_or_database_libraries(store: str) -> None:
    argv = ["--db", store, "ask", "--format", "json", "who attends from Germany?"]
    assert _run(ROOT, "bot.cli", argv)[0] == 0  # validates the config (in the real cache)
    probe = (
        "import sys\n"
        "from bot.entry import ask_fast\n"
        f"code = ask_fast({argv!r})\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stderr.strip().endswith("0 []")
    assert "Michaelis" in json.loads(done.stdout)["answer"]


def test_classify_start_up_imports_no_cli_or_settings_libraries(inputs: list[str]) -> None:
    assert _run(ROOT, "bot.cli", ["classify", *inputs])[0] == 0  # validates the config
    probe = (
        "import sys\n"
        "from bot.entry import classify_fast\n"
        f"code = classify_fast(['classify', '--format', 'jsonl', *{inputs!r}])\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stderr.strip().endswith("0 []")
    assert len(done.stdout.splitlines()) == 3
