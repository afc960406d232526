"""Fit bot/data/qa/ranker.json: the span ranker's weights, from one split of XQuAD's paragraphs.

Usage: .venv/bin/python benchmarks/_fit_ranker.py [--xquad DIR] [--write]

XQuAD (Artetxe, Ruder & Yogatama 2019; CC BY-SA 4.0) is read from $NEWSBOT_SHARED/xquad and
never copied: only the fitted weights are written, with attribution and that licence. Its
paragraphs (xq-de-NNN / xq-en-NNN, parallel) are split by number: the fit split trains, the
other split is reported (exact match and F1 with the hand choice and with the ranker). Nothing
of the news corpus or the practice questions is used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import f1, squad_norm
from bot import qa, ranker
from bot.models import Article
from bot.question import analyse as analyse_question
from bot.search import MemoryIndex

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bot" / "data" / "qa" / "ranker.json"
PAIRS = ("en-en", "de-de", "en-de")
# A candidate counts as the answer when its token F1 with a gold answer reaches this.
POSITIVE_F1 = 0.5


def fit_split(article_id: str) -> bool:
    """Whether a paragraph belongs to the fit split (parallel paragraphs share their number)."""
    number = int(article_id.rsplit("-", 1)[1])
    return (number - 1) // 2 % 2 == 0


def collect(folder: Path) -> list[dict[str, Any]]:
    """Every XQuAD question with its candidates' features, texts and best F1 with the gold."""
    with (folder / "articles.jsonl").open(encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh]
    articles = [
        Article(id=r["id"], title=r.get("title") or "", text=r["text"], lang=r["lang"]) for r in raw
    ]
    index = MemoryIndex.build(articles)
    out = []
    for pair in PAIRS:
        with (folder / f"qa-{pair}.jsonl").open(encoding="utf-8") as fh:
            items = [json.loads(line) for line in fh]
        for item in items:
            article = index.get(item["article"])
            assert article is not None
            q = analyse_question(item["question"], index)
            trace: list[tuple[tuple[float, ...], str]] = []
            qa.answer_article(q, article, index, trace=trace, learned=False)
            out.append(
                {
                    "pair": pair,
                    "qtype": q.qtype,
                    "fit": fit_split(item["article"]),
                    "x": [list(f) for f, _ in trace],
                    "text": [t for _, t in trace],
                    "f1": [max(f1(t, a) for a in item["answers"]) if t else 0.0 for _, t in trace],
                    "em": [
                        max(float(squad_norm(t) == squad_norm(a)) for a in item["answers"])
                        for _, t in trace
                    ],
                }
            )
    return out


def fit(
    rows: list[dict[str, Any]],
    l2: float,
    base: float,
    positive: float = POSITIVE_F1,
    learn: tuple[str, ...] = ranker.FEATURES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional logit (softmax over each question's candidates), soft targets ∝ F1, L2;
    the hand score enters with the fixed weight `base` (an offset), so the fitted weights are
    corrections to the hand ranking and L2 pulls them toward it."""
    raw = []
    for r in rows:
        if r["qtype"] in ("entity", "summary", "list"):
            continue  # "what ..." in Wikipedia: no news question type, no typed candidates
        target = np.array([v if v >= positive else 0.0 for v in r["f1"]])
        if len(r["x"]) > 1 and target.sum() > 0:
            raw.append((np.array(r["x"]), target / target.sum()))
    allx = np.concatenate([x for x, _ in raw])
    mean, scale = allx.mean(axis=0), allx.std(axis=0)
    scale[scale < 1e-6] = 1.0
    groups = [((x - mean) / scale, base * x[:, 0], t) for x, t in raw]
    w = np.zeros(allx.shape[1])
    mask = np.array([name in learn for name in ranker.FEATURES], dtype=float)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, 1501):  # Adam, full batch: a few thousand candidates
        grad = 2 * l2 * w
        for x, offset, t in groups:
            s = x @ w + offset
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += x.T @ (p - t) / len(groups)
        grad *= mask  # features outside `learn` keep weight 0: the hand score speaks for them
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= 0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    print(f"fitted on {len(groups)} questions with an answer among their candidates")
    return mean, scale, w


def evaluate(rows: list[dict[str, Any]], model: ranker.Model | None) -> tuple[float, float]:
    """EM and F1 of answer(): the chosen candidate, or nothing below the abstention score."""
    em = f = 0.0
    for r in rows:
        ok = [i for i, t in enumerate(r["text"]) if t]
        if not ok:
            continue
        hand = max(ok, key=lambda i: (r["x"][i][0], -i))
        if math.exp(r["x"][hand][0]) < qa.ABSTAIN_BELOW:
            continue
        chosen = hand if model is None else max(ok, key=lambda i: (model.score(r["x"][i]), -i))
        em += r["em"][chosen]
        f += r["f1"][chosen]
    return em / len(rows), f / len(rows)


def top1(rows: list[dict[str, Any]], model: ranker.Model | None) -> tuple[int, int]:
    """How often the chosen candidate is an answer, among questions that have one."""
    hit = n = 0
    for r in rows:
        ok = [i for i, t in enumerate(r["text"]) if t]
        if not any(r["f1"][i] >= POSITIVE_F1 for i in ok):
            continue
        n += 1
        if model is None:
            chosen = max(ok, key=lambda i: (r["x"][i][0], -i))
        else:
            chosen = max(ok, key=lambda i: (model.score(r["x"][i]), -i))
        hit += r["f1"][chosen] >= POSITIVE_F1
    return hit, n


def main() -> int:
    """Collect, fit on the fit split, report the other split; write the weights if asked."""
    parser = argparse.ArgumentParser(description=__doc__)
    shared = Path(os.environ.get("NEWSBOT_SHARED", ROOT.parent / "shared"))
    parser.add_argument("--xquad", type=Path, default=shared / "xquad")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--l2", type=float, default=1.0, help="pull toward the hand ranking")
    parser.add_argument("--positive", type=float, default=POSITIVE_F1, help="F1 of an answer")
    parser.add_argument("--learn", default="", help="comma-separated features to fit (all)")
    parser.add_argument("--base", type=float, default=1.0, help="weight of the hand log score")
    args = parser.parse_args()
    rows = collect(args.xquad)
    learn = tuple(args.learn.split(",")) if args.learn else ranker.FEATURES
    unknown = set(learn) - set(ranker.FEATURES)
    if unknown:
        parser.error(f"unknown features: {sorted(unknown)}")
    mean, scale, w = fit([r for r in rows if r["fit"]], args.l2, args.base, args.positive, learn)
    model = ranker.Model(tuple(mean), tuple(scale), tuple(w), args.base)
    for split in (True, False):
        for pair in PAIRS:
            part = [r for r in rows if r["fit"] == split and r["pair"] == pair]
            hand, learned = evaluate(part, None), evaluate(part, model)
            (h1, n1), (l1, _) = top1(part, None), top1(part, model)
            print(
                f"{'fit ' if split else 'held'} {pair} ({len(part)} q): "
                f"hand EM {hand[0]:.1%} F1 {hand[1]:.1%}  ranker EM {learned[0]:.1%} "
                f"F1 {learned[1]:.1%}  top-1 among {n1} with an answer: hand {h1}, ranker {l1}"
            )
    for name, weight in sorted(zip(ranker.FEATURES, w, strict=True), key=lambda p: -abs(p[1])):
        print(f"  {name:14s} {weight:+.3f}")
    if args.write:
        record = {
            "what": "weights of bot.ranker (conditional logit over candidate spans)",
            "fitted_on": "XQuAD (en-en, de-de, en-de), paragraphs whose number n has "
            "(n-1)//2 even; the other paragraphs are held out",
            "attribution": "Derived from XQuAD, Artetxe, Ruder & Yogatama (2019), "
            "https://github.com/google-deepmind/xquad, itself from SQuAD v1.1 (Rajpurkar et al. "
            "2016) and Wikipedia. Changed: only fitted weights are kept, no text.",
            "licence": "CC BY-SA 4.0, https://creativecommons.org/licenses/by-sa/4.0/ "
            "(the licence of this file only; newsbot's code stays MIT)",
            "script": "benchmarks/_fit_ranker.py",
            "features": list(ranker.FEATURES),
            "mean": [round(float(x), 6) for x in mean],
            "scale": [round(float(x), 6) for x in scale],
            "weights": [round(float(x), 6) for x in w],
            "base": args.base,
            "l2": args.l2,
        }
        OUT.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
