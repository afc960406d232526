"""Tests for the entry point's `newsbot classify` fast path: same output, fewer imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import config, entry
from bot.cli import app

from .conftest import ROOT, SEED


def test_known_sections_and_keys_match_the_settings_model() -> None:
    assert entry.DEFAULT_CONFIG_PATH == config.DEFAULT_CONFIG_PATH
    assert set(config.Settings.model_fields) - {"secrets"} == entry.SECTIONS
    assert set(config.ArticlesSettings.model_fields) == entry.ARTICLES_KEYS
    assert set(config.ClassifierSettings.model_fields) == entry.CLASSIFIER_KEYS


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "a.jsonl").write_text(
        '{"id": "k1", "text": "Luftangriffe auf Aleppo: dutzende Tote."}\n'
        '{"id": "k2", "text": "A late goal settled the Champions League tie."}\n{broken\n',
        encoding="utf-8",
    )
    return [str(SEED), str(tmp_path / "a.jsonl")]


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_fast_path_prints_what_the_full_command_prints(
    inputs: list[str], fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSBOT_CONFIG", str(ROOT / "config" / "newsbot.toml"))
    assert entry.classify_fast(["classify", "--format", fmt, *inputs]) == 0
    fast = capsys.readouterr()
    full = CliRunner().invoke(app, ["classify", "--format", fmt, *inputs], catch_exceptions=False)
    assert full.exit_code == 0
    assert fast.out == full.stdout and len(fast.out.splitlines()) == 3
    assert "a.jsonl:3" in fast.err and "malformed JSON" in fast.err


def test_anything_unusual_goes_to_the_full_command(
    tmp_path: Path, inputs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSBOT_CONFIG", str(ROOT / "config" / "newsbot.toml"))
    assert entry.classify_fast(["classify", "--help"]) is None
    assert entry.classify_fast(["ingest", *inputs]) is None
    assert entry.classify_fast(["classify", "--format", "json", *inputs]) is None
    misspelt = tmp_path / "bad.toml"
    misspelt.write_text("[classifier]\nalert_treshold = 0.9\n", encoding="utf-8")
    assert entry.classify_fast(["--config", str(misspelt), "classify", *inputs]) is None
    # ... where the full command names the key and exits 2.
    result = CliRunner().invoke(app, ["--config", str(misspelt), "classify", *inputs])
    assert result.exit_code == 2 and "alert_treshold" in result.stderr
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[classifier]\nalert_threshold = 0.2\n", encoding="utf-8")
    assert entry.classify_fast(["-c", str(wrong), "classify", *inputs]) is None


def test_classify_start_up_imports_no_cli_or_settings_libraries(inputs: list[str]) -> None:
    probe = (
        "import sys\n"
        "from bot.entry import classify_fast\n"
        f"code = classify_fast(['classify', '--format', 'jsonl', *{inputs!r}])\n"
        "heavy = sorted(m for m in ('typer', 'rich', 'pydantic', 'click', 'numpy') "
        "if m in sys.modules)\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr.strip().endswith("0 []")
    assert len(done.stdout.splitlines()) == 3


def test_fast_path_applies_a_configured_feedback_model_like_the_full_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
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
    plain = entry.classify_fast(["classify", "--format", "jsonl", str(feed)])
    without = capsys.readouterr().out
    assert entry.classify_fast(["-c", str(cfg), "classify", "--format", "jsonl", str(feed)]) == 0
    fast = capsys.readouterr().out
    full = CliRunner().invoke(
        app, ["-c", str(cfg), "classify", "--format", "jsonl", str(feed)], catch_exceptions=False
    )
    assert plain == 0 and full.exit_code == 0
    assert fast == full.stdout
    assert '"id": "n1", "conflict": true' in without
    assert '"id": "n1", "conflict": false' in fast and '"id": "n2", "conflict": true' in fast
