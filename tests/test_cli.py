import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

from .conftest import ROOT, SEED, SHARED

CORPUS = SHARED / "corpus" / "articles.jsonl"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "articles").mkdir()
    shutil.copy(SEED, tmp_path / "articles")
    return {
        "NEWSBOT_CONFIG": str(ROOT / "config" / "newsbot.toml"),
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_ARTICLES": str(tmp_path / "articles"),
        "NEWSBOT_DATABASE_URL": "",
    }


def invoke(env: dict[str, str], *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=False)


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


def test_ingest_of_nothing_readable_fails(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = invoke(env, "ingest", str(empty))
    assert result.exit_code == 1 and "empty file" in result.stderr


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


def test_bad_config_exits_2_naming_the_key(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[digest]\nmax_items = 0\n")
    result = invoke({**env, "NEWSBOT_CONFIG": str(path)}, "digest")
    assert result.exit_code == 2 and "digest.max_items" in result.stderr


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
        url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'newsbot.sqlite3'}"
        async with Store.open(url) as store:
            batch = [
                Article(f"w{i}", f"Air strikes hit town {i}", "Fighting and shelling.", "en")
                for i in range(12)
            ] + [
                Article(f"s{i}", f"Cup final {i} tonight", "The striker scored twice.", "en")
                for i in range(12)
            ]
            await store.add_articles(batch)
            for article in batch:
                relevant = article.id.startswith("w")
                await store.add_feedback(article.id, ChatRef("test", "c"), "u", relevant)

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


def test_run_shuts_down_cleanly_on_sigterm(env: dict[str, str]) -> None:
    import signal
    import time

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
        first = process.stdout.readline()  # the digest header: the service is up
        assert "digest" in first.lower()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    finally:
        process.kill()
        process.communicate()
    assert code == 0


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
