"""A small relevance model trained on one deployment's own alert feedback.

Features are hashed word unigrams, bigrams and in-word character 5-grams (German compounds
share pieces: "Raketenangriff" and "Luftangriffe" both contain "ngrif"); the model is an
L2-regularised logistic regression fitted with numpy. Saved as plain JSON, no pickle.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.models import Article

FORMAT_VERSION = 1
DEFAULT_BITS = 18
_WORD = re.compile(r"\w+")
# Only the opening of long articles: it carries the subject, and it keeps predict cheap.
_MAX_TOKENS = 400
_CHAR_N = 5
_TITLE_PREFIX = "t:"
# How much feedback it takes before the model has as much say as the lexicon scorer.
_HALF_INFLUENCE_AT = 60
_MAX_INFLUENCE = 0.8


def _features(article: Article, bits: int) -> npt.NDArray[np.int64]:
    """Distinct hashed feature indices of one article."""
    mask = (1 << bits) - 1
    feats: set[str] = set()
    for tok in _WORD.findall(article.title.casefold()):
        feats.add(_TITLE_PREFIX + tok)
    tokens = _WORD.findall(f"{article.title} {article.text}".casefold())[:_MAX_TOKENS]
    prev = ""
    for tok in tokens:
        feats.add(tok)
        if prev:
            feats.add(f"{prev} {tok}")
        prev = tok
        if len(tok) > _CHAR_N:
            feats.update("#" + tok[i : i + _CHAR_N] for i in range(len(tok) - _CHAR_N + 1))
    idx = {zlib.crc32(f.encode("utf-8")) & mask for f in feats}
    return np.fromiter(idx, dtype=np.int64, count=len(idx))


@dataclass(slots=True)
class FeedbackModel:
    """Hashed-feature logistic regression: P(relevant | article) from chat feedback."""

    weights: npt.NDArray[np.float64]
    bias: float
    n_examples: int
    n_positive: int
    bits: int = DEFAULT_BITS

    def predict(self, article: Article) -> float:
        """Probability that this deployment's users find `article` relevant."""
        idx = _features(article, self.bits)
        if idx.size == 0:
            return _sigmoid(self.bias)
        z = float(self.weights[idx].sum()) / math.sqrt(idx.size) + self.bias
        return _sigmoid(z)

    def influence(self) -> float:
        """Weight (0..0.8) of this model against the lexicon score; grows with feedback."""
        # With one class only the model knows nothing about the boundary.
        if self.n_positive == 0 or self.n_positive == self.n_examples:
            return 0.0
        n = self.n_examples
        return _MAX_INFLUENCE * n / (n + _HALF_INFLUENCE_AT)

    def save(self, path: str | Path) -> None:
        """Write the model as JSON (only the non-zero weights)."""
        nz = np.flatnonzero(self.weights)
        doc = {
            "format": "newsbot-feedback-model",
            "version": FORMAT_VERSION,
            "bits": self.bits,
            "bias": self.bias,
            "n_examples": self.n_examples,
            "n_positive": self.n_positive,
            "indices": nz.tolist(),
            "values": [round(float(v), 6) for v in self.weights[nz]],
        }
        Path(path).write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")

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
            weights, float(doc["bias"]), int(doc["n_examples"]), int(doc["n_positive"]), bits
        )


def _sigmoid(z: float) -> float:
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def train(
    examples: Iterable[tuple[Article, bool]],
    *,
    bits: int = DEFAULT_BITS,
    epochs: int = 30,
    l2: float = 1e-4,
    learning_rate: float = 0.5,
) -> FeedbackModel:
    """Fit a FeedbackModel on (article, relevant?) pairs from chat feedback."""
    rows: list[npt.NDArray[np.int64]] = []
    labels: list[float] = []
    for article, relevant in examples:
        rows.append(_features(article, bits))
        labels.append(1.0 if relevant else 0.0)
    n = len(rows)
    n_pos = int(sum(labels))
    weights = np.zeros(1 << bits, dtype=np.float64)
    # Smoothed prior so a model with little or one-sided feedback stays near 0.5.
    bias = math.log((n_pos + 1) / (n - n_pos + 1))
    if n == 0 or n_pos in (0, n):
        return FeedbackModel(weights, bias, n, n_pos, bits)
    # Feedback is lopsided (most alerts are fine or most are not): balance the classes.
    pos_weight = n / (2 * n_pos)
    neg_weight = n / (2 * (n - n_pos))
    scales = [1.0 / math.sqrt(max(r.size, 1)) for r in rows]
    rng = np.random.default_rng(0)
    order = np.arange(n)
    step = 0
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            idx, y, s = rows[i], labels[i], scales[i]
            step += 1
            lr = learning_rate / math.sqrt(1 + step / n)
            z = float(weights[idx].sum()) * s + bias
            p = _sigmoid(z)
            g = (p - y) * (pos_weight if y else neg_weight)
            # Lazy L2 on the touched weights only keeps each update O(features of one row).
            weights[idx] -= lr * (g * s + l2 * weights[idx])
            bias -= lr * g * 0.1
    return FeedbackModel(weights, bias, n, n_pos, bits)
