"""A small relevance model trained on one deployment's own 👍/👎 judgements, on top of the lexicon.

Users judge what they are shown, so feedback is mostly 👍 on alerts the lexicon already scores
high. Learning from that naively inflates every score. The model therefore only learns
*corrections* to the lexicon's log-odds, and only where they can matter:

* a correction counts fully near the decision boundary and fades away from it (`gate`), both
  when training and when applied, so a 👍 on a confident alert confirms and moves nothing;
* the correction is bounded (`_CAP` log-odds) and its influence grows with the number of
  judgements on the *minority* side (`influence`): until enough 👎 (and 👍) arrived, a handful of
  clicks changes little;
* it is fitted by full-batch regularised logistic regression, deterministic, in numpy.

Features are hashed word unigrams, bigrams, title words, in-word character 5-grams (German
compounds share pieces) and the names of the lexicon cues that fired. Saved as JSON, no pickle.
`accept` compares a new model with the previous one on a held-back slice of the judgements.
"""

from __future__ import annotations

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

FORMAT_VERSION = 2
DEFAULT_BITS = 18
_WORD = re.compile(r"\w+")
# Only the opening of long articles: it carries the subject, and it keeps predict cheap.
_MAX_TOKENS = 400
_CHAR_N = 5
# Corrections apply fully at log-odds 0 and at half strength at ±_GATE_WIDTH (p ≈ 0.05 / 0.95).
_GATE_WIDTH = 3.0
# The largest change (in log-odds) the model may make to one article's lexicon score.
_CAP = 4.0
# Judgements on the rarer side it takes before corrections apply at half strength.
_HALF_INFLUENCE_AT = 25
_L2 = 1.0
_ITERATIONS = 300
_LEARNING_RATE = 0.5
# Share of the judgements held back to check a re-trained model against the previous one.
HOLD_BACK = 0.2


def gate(logit: float) -> float:
    """How far (0..1) a correction applies at this lexicon log-odds: 1 at the boundary."""
    return 1.0 / (1.0 + (logit / _GATE_WIDTH) ** 2)


def _names(article: Article, cues: Sequence[str]) -> set[str]:
    feats: set[str] = {f"lang:{article.lang}"}
    feats.update(f"x:{cue}" for cue in cues)
    for tok in _WORD.findall(article.title.casefold()):
        feats.add("t:" + tok)
    tokens = _WORD.findall(f"{article.title} {article.text}".casefold())[:_MAX_TOKENS]
    prev = ""
    for tok in tokens:
        feats.add(tok)
        if prev:
            feats.add(f"{prev} {tok}")
        prev = tok
        if len(tok) > _CHAR_N:
            feats.update("#" + tok[i : i + _CHAR_N] for i in range(len(tok) - _CHAR_N + 1))
    return feats


def _hash(names: Iterable[str], bits: int) -> npt.NDArray[np.int64]:
    mask = (1 << bits) - 1
    # CRC32, not Python's salted hash(): a saved model must mean the same in the next process.
    idx = {zlib.crc32(name.encode("utf-8")) & mask for name in names}
    return np.fromiter(idx, dtype=np.int64, count=len(idx))


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

    @property
    def n_negative(self) -> int:
        """How many judgements said "not relevant"."""
        return self.n_examples - self.n_positive

    def influence(self) -> float:
        """How far (0..1) corrections apply: grows with the judgements on the rarer side."""
        rare = min(self.n_positive, self.n_negative)
        return rare / (rare + _HALF_INFLUENCE_AT)

    def raw(self, article: Article, cues: Sequence[str]) -> float:
        """The unbounded, ungated learned correction for one article."""
        idx = _hash(_names(article, cues), self.bits)
        return float(self.weights[idx].sum()) / math.sqrt(idx.size) if idx.size else 0.0

    def correction(self, article: Article, logit: float) -> float:
        """Change to the lexicon's log-odds `logit` of `article` (bot.classify.Correction)."""
        if not self.n_examples:
            return 0.0
        _, cues = lexicon_evidence(article)
        raw = _CAP * math.tanh(self.raw(article, cues) / _CAP)
        return self.influence() * gate(logit) * raw

    def predict(self, article: Article) -> float:
        """Probability that this deployment's users find `article` relevant."""
        logit, _ = lexicon_evidence(article)
        return _sigmoid(logit + self.correction(article, logit))

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (only the non-zero weights)."""
        nz = np.flatnonzero(self.weights)
        doc = {
            "format": "newsbot-feedback-model",
            "version": FORMAT_VERSION,
            "bits": self.bits,
            "n_examples": self.n_examples,
            "n_positive": self.n_positive,
            "indices": nz.tolist(),
            "values": [round(float(v), 6) for v in self.weights[nz]],
        }
        Path(path).write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")

    def install(self, path: str | Path) -> None:
        """Save to `path` atomically: a running bot never reads a half-written model."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        self.save(partial)
        os.replace(partial, target)

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
        return cls(weights, int(doc["n_examples"]), int(doc["n_positive"]), bits)


def train(
    examples: Iterable[tuple[Article, bool]],
    *,
    bits: int = DEFAULT_BITS,
    iterations: int = _ITERATIONS,
    l2: float = _L2,
) -> FeedbackModel:
    """Fit a FeedbackModel on (article, relevant?) judgements."""
    rows: list[npt.NDArray[np.int64]] = []
    labels: list[float] = []
    offsets: list[float] = []
    for article, relevant in examples:
        logit, cues = lexicon_evidence(article)
        rows.append(_hash(_names(article, cues), bits))
        labels.append(1.0 if relevant else 0.0)
        offsets.append(logit)
    n = len(rows)
    n_pos = int(sum(labels))
    weights = np.zeros(1 << bits, dtype=np.float64)
    if n == 0 or n_pos in (0, n):
        # One-sided feedback carries no correction: every judgement agrees, or we cannot tell.
        return FeedbackModel(weights, n, n_pos, bits)
    # Sparse design matrix as (row, column) pairs; values 1/sqrt(row length), like `raw`.
    row_of = np.concatenate([np.full(r.size, i) for i, r in enumerate(rows)])
    col_of = np.concatenate(rows)
    value = np.concatenate([np.full(r.size, 1.0 / math.sqrt(max(r.size, 1))) for r in rows])
    used, col_compact = np.unique(col_of, return_inverse=True)
    z0 = np.asarray(offsets)
    g = 1.0 / (1.0 + (z0 / _GATE_WIDTH) ** 2)
    y = np.asarray(labels)
    w = np.zeros(used.size)
    velocity = np.zeros(used.size)
    for _ in range(iterations):
        raw = np.bincount(row_of, weights=value * w[col_compact], minlength=n)
        z = z0 + g * raw
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        residual = (p - y) * g
        data_grad = np.bincount(col_compact, weights=value * residual[row_of], minlength=used.size)
        grad = data_grad / n + l2 * w / n
        velocity = 0.9 * velocity - _LEARNING_RATE * grad
        w += velocity
    weights[used] = w
    return FeedbackModel(weights, n, n_pos, bits)


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
    # Good on the slice it never saw: now learn from every judgement.
    return Retrained(train(examples), True, new, old)


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
