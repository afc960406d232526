"""Does feedback learning help? Simulated deployments on the dev labels of the shared corpus.

The dev labels are split by article into a judged and an unseen half (stratified by language
and label). Users judge (a) only the alerts they receive, (b) alerts and digest items, (c)
everything (all labels of the judged half); the first 50 / 200 / 500 / all of their judgements
(in a fixed random order) are trained on, and F1 is reported on the unseen half per language,
before (lexicon only) and after. `judged CV` is, per language, F1 on the simulated judgements
themselves: the lexicon's, then the model's cross-validated inside them, and how many lexicon
decisions the model changed out of fold to right : to wrong (mean of the repeats; what
`learn.train` decides by; `-` where a language has under `learn.MIN_PER_SIDE` judgements on a
side).
`langs` names the languages the model corrects (those where that cross-validated F1 beat the
lexicon's); `kept` is
what a deployment uses after the held-back check of `learn.retrain` (the previous model, here
none, when the new one scores worse). The model is fitted here, at run time, on the simulated
judgements only; nothing fitted on the corpus is written anywhere.

    .venv/bin/python benchmarks/feedback.py [--corpus PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.classify import Correction, classify
from bot.learn import retrain, train
from bot.models import Article, Thresholds

_ROOT = Path(__file__).resolve().parents[1]
# ../shared next to the checkout; a worktree under wt/ finds it one level further up.
DEFAULT_CORPUS = next(
    (p / "shared/corpus" for p in (_ROOT.parent, _ROOT.parent.parent) if (p / "shared").is_dir()),
    _ROOT.parent / "shared/corpus",
)
LANGS = ("de", "en")
SIZES = (50, 200, 500)
THRESHOLDS = Thresholds()
BASELINE_TARGET = 0.92
ALL_LABELS_TARGET = 0.95


def load(corpus: Path) -> tuple[dict[str, Article], dict[str, bool]]:
    """Articles and their yes/no dev labels (borderline left out)."""
    labels: dict[str, bool] = {}
    with (corpus / "labels-dev.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["label"] != "borderline":
                labels[d["id"]] = d["label"] == "yes"
    found: dict[str, Article] = {}
    with (corpus / "articles.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["id"] in labels:
                found[d["id"]] = Article(
                    id=d["id"], title=d["title"], text=d["text"], lang=d["lang"]
                )
    return found, labels


def halves(arts: dict[str, Article], gold: dict[str, bool]) -> tuple[list[str], list[str]]:
    """Judged and unseen halves: each (language, label) group dealt alternately by id hash."""
    judged: list[str] = []
    unseen: list[str] = []
    for lang in LANGS:
        for label in (True, False):
            group = sorted(
                (i for i in gold if arts[i].lang == lang and gold[i] == label),
                key=lambda i: zlib.crc32(i.encode()),
            )
            judged += group[0::2]
            unseen += group[1::2]
    return judged, unseen


def f1(pred: dict[str, bool], gold: dict[str, bool], ids: Sequence[str]) -> float:
    tp = sum(1 for i in ids if pred[i] and gold[i])
    fp = sum(1 for i in ids if pred[i] and not gold[i])
    fn = sum(1 for i in ids if gold[i] and not pred[i])
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def scores(
    arts: dict[str, Article], gold: dict[str, bool], ids: Sequence[str], model: Correction | None
) -> dict[str, float]:
    pred = {i: classify(arts[i], THRESHOLDS, model).conflict for i in ids}
    return {lang: f1(pred, gold, [i for i in ids if arts[i].lang == lang]) for lang in LANGS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    corpus: Path = args.corpus
    if not (corpus / "articles.jsonl").is_file() or not (corpus / "labels-dev.jsonl").is_file():
        print(f"corpus not found at {corpus}, skipping")
        return 0
    arts, gold = load(corpus)
    judged, unseen = halves(arts, gold)
    lexicon = {i: classify(arts[i], THRESHOLDS).score for i in judged}
    pools = {
        "(a) alerts only": [i for i in judged if lexicon[i] >= THRESHOLDS.alert],
        "(b) alerts + digest": [i for i in judged if lexicon[i] >= THRESHOLDS.digest],
        "(c) all labels": list(judged),
    }
    before = scores(arts, gold, unseen, None)
    tuned = scores(arts, gold, judged, None)
    print(f"dev labels, borderline left out: judged half {len(judged)}, unseen half {len(unseen)}")
    print(f"no feedback (lexicon) on the judged half: de {tuned['de']:.3f}  en {tuned['en']:.3f}")
    print(f"no feedback (lexicon) on the unseen half: de {before['de']:.3f}  en {before['en']:.3f}")
    print()
    header = f"{'':22} {'':6} {'':4} {'':5} {'judged CV: lexicon/model F1, fixed:broken':>43}"
    print(f"{header} {'':5} {'unseen, trained':>13}   {'unseen, kept':>16}")
    header = f"{'simulation':22} {'judged':>6} {'👎':>4} {'fit s':>5} {'de':>21} {'en':>21}"
    header += f" {'langs':>5} {'de F1':>6} {'en F1':>6}"
    print(f"{header}   {'kept':>4} {'de F1':>6} {'en F1':>6}")
    missed: list[str] = []
    for lang in LANGS:
        if before[lang] < BASELINE_TARGET:
            missed.append(f"no-feedback F1 {lang}: {before[lang]:.3f} (target {BASELINE_TARGET})")
    for name, pool in pools.items():
        order = sorted(pool)
        random.Random(13).shuffle(order)
        sizes = [n for n in SIZES if n < len(order)] + [len(order)]
        for n in sizes:
            examples = [(arts[i], gold[i]) for i in order[:n]]
            negatives = sum(not y for _, y in examples)
            start = time.perf_counter()
            model = train(examples)
            fit_seconds = time.perf_counter() - start
            after = scores(arts, gold, unseen, model)
            outcome = retrain(examples, None)
            kept = scores(arts, gold, unseen, outcome.model)
            langs = ",".join(model.languages) or "-"
            cv = {
                lang: "{:.3f}/{:.3f} {:.0f}:{:.0f}".format(
                    *model.cv_f1[lang], *model.cv_changed[lang]
                )
                if lang in model.cv_f1
                else "-"
                for lang in LANGS
            }
            print(
                f"{name:22} {n:6} {negatives:4} {fit_seconds:5.1f} {cv['de']:>21} {cv['en']:>21} "
                f"{langs:>5} "
                f"{after['de']:6.3f} {after['en']:6.3f}   "
                f"{'new' if outcome.accepted else 'old':>4} {kept['de']:6.3f} {kept['en']:6.3f}"
            )
            for lang in LANGS:
                for what, figure in (("trained", after[lang]), ("kept", kept[lang])):
                    if figure < before[lang] - 1e-9:
                        missed.append(
                            f"never below no-feedback, {name} n={n} {lang} ({what}): "
                            f"{figure:.3f} (target >= {before[lang]:.3f})"
                        )
                if name.startswith("(c)") and n == len(order) and kept[lang] < ALL_LABELS_TARGET:
                    missed.append(
                        f"all dev judgements F1 {lang}: {kept[lang]:.3f} "
                        f"(target {ALL_LABELS_TARGET})"
                    )
    print()
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
