"""A small relevance model trained on one deployment's own 👍/👎 judgements, on top of the lexicon.

Users judge what they are shown, so feedback is mostly 👍 on alerts the lexicon already scores
high. Learning from that naively inflates every score. The model therefore only learns
*corrections* to the lexicon's log-odds (the lexicon score is the offset), and only where they
can matter:

* a correction counts fully near the decision boundary and fades away from it (`gate`), both
  when training and when applied, so a 👍 on a confident alert confirms and moves nothing;
* the correction is bounded (`_CAP` log-odds) and its reach grows with the number of
  judgements on the *minority* side (`influence_of`): until enough 👎 (and 👍) arrived, a
  handful of clicks changes little; one-sided feedback changes nothing;
* it is an L2-regularised logistic regression, the L2 strength chosen by cross-validation on
  the judgements alone, fitted deterministically in numpy (a few seconds for 1,000).

Features are hashed words and word pairs of the lead, words of the body's opening and the names
of the lexicon cues that fired. Saved as JSON, no pickle. `retrain` keeps the previous model
when the new one scores worse on a held-back slice of the judgements.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.classify import lexicon_evidence
from bot.models import Article

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
DEFAULT_BITS = 18
_WORD = re.compile(r"\w+")
# The lead (headline and first sentences) carries the subject: its words and word pairs are
# features of their own; of the body only the opening words, which also keeps predict cheap.
_LEAD_TOKENS = 60
_MAX_TOKENS = 160
# Corrections apply fully at log-odds 0 and at half strength at ±_GATE_WIDTH (p ≈ 0.05 / 0.95).
_GATE_WIDTH = 3.0
# The largest change (in log-odds) the model may make to one article's lexicon score.
_CAP = 4.0
# Judgements on the rarer side it takes before corrections may reach half the cap.
_HALF_INFLUENCE_AT = 10
# L2 strengths tried by cross-validation inside the judgements, and the folds for it.
_L2_GRID = (0.1, 0.3, 1.0)
_FOLDS = 3
_ITERATIONS = 100
_LEARNING_RATE = 0.05
# Share of the judgements held back to check a re-trained model against the previous one.
HOLD_BACK = 0.2


def gate(logit: float) -> float:
    """How far (0..1) a correction applies at this lexicon log-odds: 1 at the boundary."""
    return 1.0 / (1.0 + (logit / _GATE_WIDTH) ** 2)


def influence_of(n_positive: int, n_negative: int) -> float:
    """How much (0..1) of the cap corrections may use: grows with the rarer side's judgements."""
    rare = min(n_positive, n_negative)
    return rare / (rare + _HALF_INFLUENCE_AT)


def _names(article: Article, cues: Sequence[str]) -> set[str]:
    feats: set[str] = {f"x:{cue}" for cue in cues}
    # 20 characters a word is plenty: long articles are not tokenised past what is used.
    opening = f"{article.title} {article.text[: 20 * _MAX_TOKENS]}"
    tokens = _WORD.findall(opening.casefold())[:_MAX_TOKENS]
    lead = tokens[:_LEAD_TOKENS]
    feats.update("l:" + tok for tok in lead)
    feats.update(f"l:{a} {b}" for a, b in itertools.pairwise(lead))
    feats.update("b:" + tok for tok in tokens[_LEAD_TOKENS:])
    return feats


def _row(
    article: Article, cues: Sequence[str], bits: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Hashed feature indices of one article and their values (1/√count: articles weigh alike)."""
    mask = (1 << bits) - 1
    # CRC32, not Python's salted hash(): a saved model must mean the same in the next process.
    idx = {zlib.crc32(name.encode("utf-8")) & mask for name in _names(article, cues)}
    found = np.fromiter(idx, dtype=np.int64, count=len(idx))
    return found, np.full(found.size, 1.0 / math.sqrt(max(found.size, 1)))


def _sigmoid(z: float) -> float:
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(slots=True)
class FeedbackModel:
    """Bounded, boundary-gated corrections to the lexicon's log-odds, learned from feedback."""

    weights: npt.NDArray[np.float64]
    n_examples: int
    n_positive: int
    bits: int = DEFAULT_BITS
    l2: float = 0.0
    # Languages the corrections apply to: those where cross-validation showed they help.
    languages: tuple[str, ...] = ()

    @property
    def n_negative(self) -> int:
        """How many judgements said "not relevant"."""
        return self.n_examples - self.n_positive

    def influence(self) -> float:
        """How much (0..1) of the cap corrections may use, from the judgements on the rarer side."""
        return influence_of(self.n_positive, self.n_negative)

    def raw(self, article: Article, cues: Sequence[str]) -> float:
        """The unbounded, ungated learned correction for one article."""
        idx, val = _row(article, cues, self.bits)
        return float(self.weights[idx] @ val)

    def correction(self, article: Article, logit: float, cues: Sequence[str]) -> float:
        """Change to the lexicon's log-odds `logit` of `article` (bot.classify.Correction)."""
        if article.lang not in self.languages:
            return 0.0
        bounded = _CAP * math.tanh(self.raw(article, cues) / _CAP)
        return self.influence() * gate(logit) * bounded

    def predict(self, article: Article) -> float:
        """Probability that this deployment's users find `article` relevant."""
        logit, cues = lexicon_evidence(article)
        return _sigmoid(logit + self.correction(article, logit, cues))

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (only the non-zero weights)."""
        nz = np.flatnonzero(self.weights)
        doc = {
            "format": "newsbot-feedback-model",
            "version": FORMAT_VERSION,
            "bits": self.bits,
            "n_examples": self.n_examples,
            "n_positive": self.n_positive,
            "l2": self.l2,
            "languages": list(self.languages),
            "indices": nz.tolist(),
            "values": [round(float(v), 6) for v in self.weights[nz]],
        }
        Path(path).write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")

    def install(self, path: str | Path) -> None:
        """Save to `path` atomically: a running bot never reads a half-written model."""
        target = Path(path)
        if target.is_dir():
            # with_name on a folder would put the partial file beside it (`/tmp` → `/.tmp…`).
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            self.save(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> FeedbackModel:
        """Read a model written by `save`."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("format") != "newsbot-feedback-model" or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a newsbot feedback model (version {FORMAT_VERSION})")
        bits = int(doc["bits"])
        weights = np.zeros(1 << bits, dtype=np.float64)
        indices = np.asarray(doc["indices"], dtype=np.int64)
        weights[indices] = np.asarray(doc["values"], dtype=np.float64)
        return cls(
            weights,
            int(doc["n_examples"]),
            int(doc["n_positive"]),
            bits,
            float(doc["l2"]),
            tuple(str(lang) for lang in doc["languages"]),
        )


@dataclass(frozen=True, slots=True)
class _Design:
    """Judgements as a sparse matrix over the columns they use, with offsets and labels."""

    row_of: npt.NDArray[np.int64]
    col_of: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    columns: npt.NDArray[np.int64]
    offset: npt.NDArray[np.float64]
    label: npt.NDArray[np.float64]
    lang: npt.NDArray[np.str_]

    @classmethod
    def of(cls, examples: Iterable[tuple[Article, bool]], bits: int) -> _Design:
        rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
        offsets: list[float] = []
        labels: list[float] = []
        langs: list[str] = []
        for article, relevant in examples:
            logit, cues = lexicon_evidence(article)
            rows.append(_row(article, cues, bits))
            offsets.append(logit)
            labels.append(1.0 if relevant else 0.0)
            langs.append(article.lang)
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, np.zeros(0), empty, np.zeros(0), np.zeros(0), np.array([]))
        row_of = np.concatenate([np.full(r[0].size, i) for i, r in enumerate(rows)])
        columns, col_of = np.unique(np.concatenate([r[0] for r in rows]), return_inverse=True)
        value = np.concatenate([r[1] for r in rows])
        return cls(
            row_of,
            col_of,
            value,
            columns,
            np.asarray(offsets),
            np.asarray(labels),
            np.asarray(langs, dtype=np.str_),
        )

    def subset(self, keep: npt.NDArray[np.bool_]) -> _Design:
        """The rows where `keep` is true (columns stay, so weights line up)."""
        new_index = np.cumsum(keep) - 1
        on = keep[self.row_of]
        return _Design(
            new_index[self.row_of[on]],
            self.col_of[on],
            self.value[on],
            self.columns,
            self.offset[keep],
            self.label[keep],
            self.lang[keep],
        )

    def margins(self, w: npt.NDArray[np.float64], influence: float) -> npt.NDArray[np.float64]:
        """Log-odds of each row under column weights `w`: lexicon plus bounded, gated correction."""
        raw = np.bincount(
            self.row_of, weights=self.value * w[self.col_of], minlength=self.offset.size
        )
        g = 1.0 / (1.0 + (self.offset / _GATE_WIDTH) ** 2)
        return self.offset + influence * g * _CAP * np.tanh(raw / _CAP)


def _fit(design: _Design, influence: float, l2: float, iterations: int) -> npt.NDArray[np.float64]:
    """Column weights minimising mean log loss + l2/2n·|w|² (Adam: features are rare and tiny)."""
    n = design.offset.size
    w = np.zeros(design.columns.size)
    if n == 0 or influence == 0.0:
        return w
    g = influence / (1.0 + (design.offset / _GATE_WIDTH) ** 2)
    y = design.label
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for step in range(1, iterations + 1):
        raw = np.bincount(design.row_of, weights=design.value * w[design.col_of], minlength=n)
        t = np.tanh(raw / _CAP)
        z = design.offset + g * _CAP * t
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        # d loss / d raw: the residual through the gate and the tanh bound.
        residual = (p - y) * g * (1.0 - t * t)
        data_grad = np.bincount(
            design.col_of, weights=design.value * residual[design.row_of], minlength=w.size
        )
        grad = data_grad / n + l2 * w / n
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= _LEARNING_RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w


def _log_loss(design: _Design, margins: npt.NDArray[np.float64]) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-np.clip(margins, -40, 40))), 1e-6, 1 - 1e-6)
    y = design.label
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _choose_l2(
    design: _Design, influence: float, iterations: int, grid: Sequence[float]
) -> tuple[float, npt.NDArray[np.float64]]:
    """The L2 strength with the lowest cross-validated log loss, and its out-of-fold log-odds."""
    n = design.offset.size
    fold = np.arange(n) % _FOLDS
    best, best_loss, best_out = grid[-1], math.inf, design.offset
    for l2 in grid:
        out = np.zeros(n)
        for k in range(_FOLDS):
            test = fold == k
            w = _fit(design.subset(~test), influence, l2, iterations)
            out[test] = design.subset(test).margins(w, influence)
        loss = _log_loss(design, out)
        if loss < best_loss - 1e-9:
            best, best_loss, best_out = l2, loss, out
    return best, best_out


def _f1_of(yes: npt.NDArray[np.bool_], label: npt.NDArray[np.float64]) -> float:
    truth = label > 0.5
    tp = int(np.sum(yes & truth))
    wrong = int(np.sum(yes != truth))
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 1.0


def _helped(design: _Design, out: npt.NDArray[np.float64]) -> tuple[str, ...]:
    """Languages whose judgements the corrections, cross-validated, get more often right (F1)."""
    helped: list[str] = []
    for lang in sorted(set(design.lang.tolist())):
        mine = design.lang == lang
        label = design.label[mine]
        if _f1_of(out[mine] >= 0, label) > _f1_of(design.offset[mine] >= 0, label) + 1e-9:
            helped.append(lang)
    return tuple(helped)


def train(
    examples: Iterable[tuple[Article, bool]],
    *,
    bits: int = DEFAULT_BITS,
    iterations: int = _ITERATIONS,
    l2: float | None = None,
) -> FeedbackModel:
    """Fit a FeedbackModel on (article, relevant?) judgements (L2 by cross-validation on them)."""
    design = _Design.of(examples, bits)
    n = design.offset.size
    n_pos = int(design.label.sum())
    weights = np.zeros(1 << bits, dtype=np.float64)
    if n == 0 or n_pos in (0, n):
        # One-sided feedback carries no correction: every judgement agrees, or we cannot tell.
        return FeedbackModel(weights, n, n_pos, bits)
    influence = influence_of(n_pos, n - n_pos)
    if n < 2 * _FOLDS:
        return FeedbackModel(weights, n, n_pos, bits)
    grid = _L2_GRID if l2 is None else (l2,)
    chosen, out = _choose_l2(design, influence, iterations, grid)
    # Only where corrections fixed more than they broke on judgements they were not fitted on:
    # elsewhere the lexicon is left alone (that is what keeps feedback from making it worse).
    languages = _helped(design, out)
    if not languages:
        return FeedbackModel(weights, n, n_pos, bits)
    weights[design.columns] = _fit(design, influence, chosen, iterations)
    return FeedbackModel(weights, n, n_pos, bits, chosen, languages)


def _split(examples: Sequence[tuple[Article, bool]]) -> tuple[list[int], list[int]]:
    """Deterministic fit / held-back indices by a hash of the article id."""
    fit: list[int] = []
    held: list[int] = []
    for i, (article, _) in enumerate(examples):
        bucket = zlib.crc32(article.id.encode("utf-8")) % 1000
        (held if bucket < HOLD_BACK * 1000 else fit).append(i)
    return fit, held


def _score(
    predict: Callable[[Article], float], examples: Sequence[tuple[Article, bool]]
) -> tuple[float, float]:
    """(F1 at 0.5, minus log loss) of a predictor: higher is better on both."""
    tp = fp = fn = 0
    loss = 0.0
    for article, relevant in examples:
        p = min(max(predict(article), 1e-6), 1 - 1e-6)
        loss -= math.log(p if relevant else 1 - p)
        yes = p >= 0.5
        tp += yes and relevant
        fp += yes and not relevant
        fn += relevant and not yes
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return round(f1, 6), -loss / max(len(examples), 1)


def lexicon_only(article: Article) -> float:
    """The lexicon's own probability: the baseline a first model must beat."""
    return _sigmoid(lexicon_evidence(article)[0])


@dataclass(frozen=True, slots=True)
class Retrained:
    """The outcome of a re-training: the model to use and why."""

    model: FeedbackModel | None
    accepted: bool
    new_score: tuple[float, float]
    old_score: tuple[float, float]


def retrain(examples: Sequence[tuple[Article, bool]], previous: FeedbackModel | None) -> Retrained:
    """Train on judgements; keep `previous` if the new model scores worse on a held-back slice."""
    fit, held = _split(examples)
    checked = [examples[i] for i in held]
    candidate = train(examples[i] for i in fit)
    new = _score(candidate.predict, checked)
    old = _score(previous.predict if previous is not None else lexicon_only, checked)
    if new < old:
        return Retrained(previous, False, new, old)
    # Good on the slice it never saw: now learn from every judgement (with the L2 strength
    # chosen without the slice, when there was one; each choice costs nine fits).
    final = train(examples, l2=candidate.l2 if candidate.languages else None)
    return Retrained(final, True, new, old)


_current: dict[Path, tuple[float, FeedbackModel]] = {}


def load_current(path: Path | None) -> FeedbackModel | None:
    """The model at `path` if the file exists; read again only after it was rewritten."""
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    cached = _current.get(path)
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, FeedbackModel.load(path))
        except (ValueError, KeyError, OSError) as exc:
            # A model of an older format (or a broken file) must not stop ingest: classify
            # with the lexicon alone until `newsbot train` or the nightly job replaces it.
            log.warning("feedback model %s not used: %s", path, exc)
            return None
        _current[path] = cached
    return cached[1]
