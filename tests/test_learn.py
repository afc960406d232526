"""Tests for the feedback model: train, save/load, predict and its effect on classify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.classify import classify
from bot.learn import FeedbackModel, train
from bot.models import Article


def art(i: int, title: str, text: str = "", lang: str = "en") -> Article:
    return Article(id=f"f-{i}", title=title, text=text, lang=lang)


# A deployment whose users care about cyber attacks on infrastructure (the lexicon does not).
RELEVANT = [
    art(i, f"Cyber attack cripples power grid in region {i}", "Hackers shut down the grid.")
    for i in range(20)
]
IRRELEVANT = [
    art(100 + i, f"Local bakery wins prize number {i}", "The bread was praised by the jury.")
    for i in range(20)
]
EXAMPLES = [(a, True) for a in RELEVANT] + [(a, False) for a in IRRELEVANT]
PROBE = art(999, "Cyber attack cripples power grid in region 77", "Hackers shut down the grid.")


def test_train_predict_learns_feedback() -> None:
    model = train(EXAMPLES)
    assert model.n_examples == 40
    assert model.n_positive == 20
    assert model.predict(PROBE) > 0.5
    assert model.predict(art(998, "Bakery wins prize", "The jury praised the bread.")) < 0.5


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = train(EXAMPLES)
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text("utf-8"))
    assert doc["format"] == "newsbot-feedback-model"
    loaded = FeedbackModel.load(path)
    assert abs(loaded.predict(PROBE) - model.predict(PROBE)) < 1e-4
    assert loaded.n_examples == model.n_examples


def test_model_shifts_classify() -> None:
    base = classify(PROBE)
    model = train(EXAMPLES)
    tuned = classify(PROBE, model=model)
    assert not base.conflict
    assert tuned.conflict
    assert tuned.score > base.score
    assert tuned.reasons


def test_little_feedback_changes_little() -> None:
    model = train(EXAMPLES[:1] + EXAMPLES[-1:])
    base = classify(PROBE).score
    assert abs(classify(PROBE, model=model).score - base) < 0.2


def test_empty_and_one_sided_feedback() -> None:
    empty = train([])
    # No feedback: the model predicts exactly what the lexicon says.
    assert empty.predict(PROBE) == pytest.approx(classify(PROBE).score, abs=1e-3)
    assert classify(PROBE, model=empty).score == classify(PROBE).score
    only_yes = train([(a, True) for a in RELEVANT])
    # Only 👍 votes must not make an empty article look conflict-related.
    assert classify(art(1, "", ""), model=only_yes).score < 0.5


def test_load_rejects_foreign_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}', "utf-8")
    try:
        FeedbackModel.load(path)
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")
