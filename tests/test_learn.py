"""Tests for the feedback model: learning that can only help, save/load, the held-back check."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.classify import classify, lexicon_evidence
from bot.learn import (
    HOLD_BACK,
    MIN_PER_SIDE,
    FeedbackModel,
    _significant,
    lexicon_only,
    load_current,
    retrain,
    train,
)
from bot.models import Article

from .conftest import SHARED


def art(i: int, title: str, text: str = "", lang: str = "en") -> Article:
    return Article(id=f"f-{i}", title=title, text=text, lang=lang)


IRRELEVANT = [
    art(100 + i, f"Local bakery wins prize number {i}", "The bread was praised by the jury.")
    for i in range(20)
]
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


# A deployment whose users want state cyber attacks on infrastructure (the lexicon is unsure
# of them) and not the army's civil work (which the lexicon leans towards). Articles are made
# from templates; the held-out ones name places no training article names.
_TARGETS = (
    "power grid",
    "water works",
    "rail network",
    "hospital network",
    "gas pipeline",
    "airport",
)
_EFFECTS = (
    "cut power to thousands",
    "shut down the pumps",
    "stopped all trains",
    "froze patient records",
    "halted the flow",
    "grounded flights",
)
_ACTORS = ("a foreign army unit", "military intelligence", "a hostile army")
_TASKS = (
    ("flood relief", "filled sandbags as the river rose"),
    ("snow clearing", "cleared roads after the blizzard"),
    ("wildfire fighting", "dug firebreaks near the villages"),
    ("a vaccination drive", "set up clinics in the schools"),
    ("the harvest", "brought in the grain"),
    ("bridge repairs", "rebuilt the footbridge"),
)
_PLACES = ("Tallinn", "Riga", "Vilnius", "Oslo", "Helsinki", "Prague", "Lisbon", "Dublin")


def _deployment(places: tuple[str, ...]) -> list[tuple[Article, bool]]:
    cyber = [
        Article(
            id=f"c-{place}-{i}",
            title=f"Hackers attack {_TARGETS[i]} in {place}",
            text=f"The attack {_EFFECTS[i]}; officials blamed {_ACTORS[i % 3]}.",
            lang="en",
        )
        for place in places
        for i in range(6)
    ]
    civil = [
        Article(
            id=f"a-{place}-{i}",
            title=f"Army helps with {_TASKS[i][0]} in {place}",
            text=f"Soldiers {_TASKS[i][1]}, the town council said.",
            lang="en",
        )
        for place in places
        for i in range(6)
    ]
    return [(a, True) for a in cyber] + [(a, False) for a in civil]


def _f1(predict: Callable[[Article], bool], examples: list[tuple[Article, bool]]) -> float:
    tp = sum(1 for a, y in examples if y and predict(a))
    fp = sum(1 for a, y in examples if not y and predict(a))
    fn = sum(1 for a, y in examples if y and not predict(a))
    return 2 * tp / (2 * tp + fp + fn)


JUDGED, HELD_OUT = _deployment(_PLACES[:5]), _deployment(_PLACES[5:])
NEAR = HELD_OUT[0][0]  # a state cyber attack: the lexicon leans to "no", these users to "yes"


def test_a_trained_model_improves_f1_on_held_out_articles() -> None:
    judged, held_out = JUDGED, HELD_OUT
    model = train(judged)
    assert (model.n_examples, model.n_positive, model.n_negative) == (60, 30, 30)
    assert model.languages == ("en",) and model.cv_f1["en"][1] > model.cv_f1["en"][0]
    before = _f1(lambda a: classify(a).conflict, held_out)
    after = _f1(lambda a: classify(a, model=model).conflict, held_out)
    assert before < 0.5  # the lexicon alone gets this deployment's notion wrong
    assert after > 0.8
    # A re-weighting of the lexicon's evidence, not a new classifier: no war, no alert.
    bakery = art(998, "Bakery wins prize", "The jury praised the bread.")
    assert not classify(bakery, model=model).conflict


def test_the_held_back_check_accepts_a_model_that_helps() -> None:
    outcome = retrain(JUDGED, None)
    assert outcome.accepted and outcome.model is not None
    assert outcome.model.n_examples == len(JUDGED)
    assert outcome.new_score > outcome.old_score
    assert _f1(lambda a: classify(a, model=outcome.model).conflict, HELD_OUT) > 0.8


def test_confirming_alerts_changes_no_score() -> None:
    # Users judge what they see: 30 👍 on true alerts and one 👎 (the case that cost German
    # F1 0.92 → 0.84 with a naive learner). One 👎 is too few to learn from: nothing moves.
    examples = [(a, True) for a in ALERTS] + [(IRRELEVANT[0], False)]
    model = train(examples)
    assert model.languages == ()
    for other in OTHERS + IRRELEVANT + ALERTS + [a for a, _ in HELD_OUT]:
        assert classify(other, model=model) == classify(other)


def test_a_language_needs_enough_judgements_on_each_side() -> None:
    relevant = [e for e in JUDGED if e[1]]
    irrelevant = [e for e in JUDGED if not e[1]]
    few = relevant[: MIN_PER_SIDE - 1] + irrelevant
    assert train(few).languages == ()
    assert train(relevant[:MIN_PER_SIDE] + irrelevant).languages == ("en",)


def test_only_languages_whose_judgements_show_a_gain_are_corrected() -> None:
    # German judgements the lexicon already gets right add nothing to correct.
    german = [
        (Article(f"dw{i}", f"Luftangriffe auf Stadt {i}", "Kämpfe und Beschuss.", "de"), True)
        for i in range(12)
    ] + [
        (Article(f"ds{i}", f"Pokalfinale {i} heute", "Der Stürmer traf zweimal.", "de"), False)
        for i in range(12)
    ]
    model = train(JUDGED + german)
    assert model.languages == ("en",)
    probe = Article("dx", "Angriff auf die Tabellenspitze", "Der Verein siegte.", "de")
    assert classify(probe, model=model) == classify(probe)


def test_corrections_are_bounded() -> None:
    model = train(JUDGED)
    logit, evidence = lexicon_evidence(NEAR)
    assert model.correction(NEAR, logit, evidence) > 0
    extreme = [100.0] * len(evidence)
    for z in (-50.0, 0.0, 50.0):
        assert abs(model.correction(NEAR, z, extreme)) <= 4.0
        assert abs(model.correction(NEAR, z, [-v for v in extreme])) <= 4.0


def test_one_sided_feedback_changes_nothing() -> None:
    for examples in ([], [e for e in JUDGED if e[1]], [e for e in JUDGED if not e[1]]):
        model = train(examples)
        assert model.languages == ()
        assert classify(NEAR, model=model).score == classify(NEAR).score


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = train(JUDGED)
    path = tmp_path / "model.json"
    model.save(path)
    doc = json.loads(path.read_text("utf-8"))
    assert doc["format"] == "newsbot-feedback-model" and list(doc["languages"]) == ["en"]
    loaded = FeedbackModel.load(path)
    assert loaded.predict(NEAR) == pytest.approx(model.predict(NEAR), abs=1e-4)
    assert loaded.predict(NEAR) > lexicon_only(NEAR) + 0.2
    assert (loaded.n_examples, loaded.n_positive, loaded.languages) == (60, 30, ("en",))
    assert loaded.l2 == model.l2 and loaded.cv_f1 == model.cv_f1
    assert loaded.cv_changed == model.cv_changed and model.cv_changed["en"][0] > 0


def test_install_into_a_folder_is_refused_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """`install(Path("/tmp"))` wrote `/.tmp.partial` beside the folder, then failed."""
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        train(JUDGED).install(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert list(folder.iterdir()) == []


def test_load_rejects_foreign_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}', "utf-8")
    with pytest.raises(ValueError, match="not a newsbot feedback model"):
        FeedbackModel.load(path)


def _held_back(article: Article) -> bool:
    return zlib.crc32(article.id.encode("utf-8")) % 1000 < HOLD_BACK * 1000


def test_retrain_keeps_the_previous_model_when_the_new_one_scores_worse() -> None:
    previous = train(JUDGED)  # these users want state cyber attacks
    # Judgements that contradict themselves: the slice the model is checked on says the
    # opposite of what it was fitted on, so the new model must lose to the previous one.
    places = [f"Town{k}" for k in range(10)]
    cyber = [a for a, relevant in _deployment(tuple(places)) if relevant]
    noisy = [(a, _held_back(a)) for a in cyber] + [(a, True) for a in ALERTS]
    assert any(_held_back(a) for a in cyber) and not all(_held_back(a) for a in cyber)
    outcome = retrain(noisy, previous)
    assert not outcome.accepted
    assert outcome.model is previous
    assert outcome.new_score < outcome.old_score


def test_a_model_of_an_older_format_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text('{"format": "newsbot-feedback-model", "version": 3}', "utf-8")
    assert load_current(path) is None
    train(JUDGED).save(path)
    model = load_current(path)
    assert model is not None and model.n_examples == 60


CORPUS = SHARED / "corpus"


@pytest.mark.skipif(not (CORPUS / "labels-dev.jsonl").is_file(), reason="no shared corpus")
def test_judgements_of_half_the_dev_labels_never_lower_f1_on_the_other_half() -> None:
    # The research corpus is read where it lies, never copied; the model is fitted here.
    gold: dict[str, bool] = {}
    for line in (CORPUS / "labels-dev.jsonl").read_text("utf-8").splitlines():
        record = json.loads(line)
        if record["label"] != "borderline":
            gold[record["id"]] = record["label"] == "yes"
    found: dict[str, Article] = {}
    for line in (CORPUS / "articles.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        if d["id"] in gold:
            found[d["id"]] = Article(id=d["id"], title=d["title"], text=d["text"], lang=d["lang"])
    # Split by article: even-numbered judged, odd-numbered unseen.
    judged = [i for i in sorted(gold) if int(i.split("-")[1]) % 2 == 0]
    unseen = [(found[i], gold[i]) for i in sorted(gold) if int(i.split("-")[1]) % 2 == 1]
    outcome = retrain([(found[i], gold[i]) for i in judged], None)
    for lang in ("de", "en"):
        part = [(a, y) for a, y in unseen if a.lang == lang]
        before = _f1(lambda a: classify(a).conflict, part)
        after = _f1(lambda a: classify(a, model=outcome.model).conflict, part)
        assert after >= before, lang


def test_a_gain_of_a_few_articles_is_not_enough() -> None:
    # Out of fold, the model fixed 5 lexicon decisions and broke 2: as likely luck as a lesson.
    assert not _significant(5, 2)
    assert not _significant(0, 0) and not _significant(3, 3)
    assert _significant(5, 0) and _significant(20, 5)
