"""Tests for the feedback model: learning that can only help, save/load, the held-back check."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from bot.classify import classify, lexicon_evidence
from bot.learn import (
    HOLD_BACK,
    FeedbackModel,
    gate,
    lexicon_only,
    load_current,
    retrain,
    train,
)
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
# Confident alerts: war vocabulary in the title and body.
ALERTS = [
    art(
        200 + i,
        f"Air strikes and shelling kill {i + 3} soldiers as troops advance",
        "Artillery shelled the front line; the army said its troops repelled an offensive.",
    )
    for i in range(30)
]
OTHERS = [
    art(300, "Museum opens new wing for modern painting", "Visitors praised the collection."),
    art(301, "Central bank keeps interest rates unchanged", "Inflation slowed in March."),
    art(302, "Rebels attack army post near the border", "Two soldiers were wounded."),
    art(303, "Protest march through the capital stays peaceful", "Police escorted the crowd."),
]


def test_consistent_feedback_moves_scores_its_way() -> None:
    model = train(EXAMPLES)
    assert (model.n_examples, model.n_positive, model.n_negative) == (40, 20, 20)
    assert model.predict(PROBE) > 1.5 * lexicon_only(PROBE)
    bakery = art(998, "Bakery wins prize", "The jury praised the bread.")
    assert model.predict(bakery) == pytest.approx(lexicon_only(bakery), abs=0.01)


def test_confirming_alerts_inflates_no_other_score() -> None:
    # Users judge what they see: 30 👍 on true alerts and one 👎 (the case that cost German
    # F1 0.92 → 0.84). Nothing else may rise; the alerts themselves stay alerts.
    examples = [(a, True) for a in ALERTS] + [(IRRELEVANT[0], False)]
    model = train(examples)
    for other in OTHERS + IRRELEVANT + [PROBE]:
        assert classify(other, model=model).score == pytest.approx(classify(other).score, abs=0.02)
    assert all(classify(a, model=model).level == classify(a).level for a in ALERTS)


def test_corrections_apply_near_the_boundary_and_are_bounded() -> None:
    assert gate(0.0) == 1.0
    assert gate(3.0) == pytest.approx(0.5)
    assert gate(9.0) < 0.11
    model = train(EXAMPLES)
    logit, _ = lexicon_evidence(PROBE)
    # However much the users agree, one article moves at most the cap times the gate.
    assert 0 < model.correction(PROBE, logit) <= 4.0 * gate(logit)
    assert model.correction(PROBE, 12.0) < model.correction(PROBE, 0.0) / 10


def test_little_feedback_changes_little() -> None:
    model = train(EXAMPLES[:1] + EXAMPLES[-1:])
    assert model.influence() < 0.05
    assert abs(classify(PROBE, model=model).score - classify(PROBE).score) < 0.01


def test_one_sided_feedback_changes_nothing() -> None:
    for examples in ([], [(a, True) for a in RELEVANT], [(a, False) for a in IRRELEVANT]):
        model = train(examples)
        assert classify(PROBE, model=model).score == classify(PROBE).score


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = train(EXAMPLES)
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text("utf-8"))
    assert doc["format"] == "newsbot-feedback-model"
    loaded = FeedbackModel.load(path)
    assert loaded.predict(PROBE) == pytest.approx(model.predict(PROBE), abs=1e-4)
    assert (loaded.n_examples, loaded.n_positive) == (40, 20)


def test_load_rejects_foreign_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}', "utf-8")
    with pytest.raises(ValueError, match="not a newsbot feedback model"):
        FeedbackModel.load(path)


def _held_back(article: Article) -> bool:
    return zlib.crc32(article.id.encode("utf-8")) % 1000 < HOLD_BACK * 1000


def test_retrain_accepts_a_model_that_holds_on_the_held_back_slice() -> None:
    outcome = retrain(EXAMPLES, None)
    assert outcome.accepted
    assert outcome.model is not None and outcome.model.n_examples == 40
    assert outcome.new_score >= outcome.old_score


def test_retrain_keeps_the_previous_model_when_the_new_one_scores_worse() -> None:
    previous = train(EXAMPLES)
    # Judgements that contradict themselves: the slice the model is checked on says the
    # opposite of what it was fitted on, so the new model must lose to the previous one.
    cyber = [
        art(500 + i, f"Cyber attack cripples power grid in region {i}", "Hackers hit the grid.")
        for i in range(60)
    ]
    noisy = [(a, _held_back(a)) for a in cyber] + [(a, True) for a in ALERTS]
    assert any(_held_back(a) for a in cyber) and not all(_held_back(a) for a in cyber)
    outcome = retrain(noisy, previous)
    assert not outcome.accepted
    assert outcome.model is previous
    assert outcome.new_score < outcome.old_score


def test_a_model_of_an_older_format_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text('{"format": "newsbot-feedback-model", "version": 1}', "utf-8")
    assert load_current(path) is None
    train(EXAMPLES).save(path)
    model = load_current(path)
    assert model is not None and model.n_examples == 40
