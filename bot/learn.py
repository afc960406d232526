"""A small relevance model trained on one deployment's own alert feedback.

Features are hashed word unigrams, bigrams and in-word character 5-grams (German compounds
share pieces: "Raketenangriff" and "Luftangriffe" both contain "ngrif"); the model is an
L2-regularised logistic regression fitted with numpy on top of the lexicon scorer: the
lexicon's log-odds are a fixed offset, so the model learns only corrections where this
deployment's users disagree with the lexicon. Saved as plain JSON, no pickle.
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
# How much feedback it takes before the learned corrections apply in full.
_HALF_INFLUENCE_AT = 10


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

    def correction(self, article: Article) -> float:
        """Learned change to the lexicon's log-odds for `article`, scaled by feedback volume."""
        idx = _features(article, self.bits)
        raw = self.bias + (
            float(self.weights[idx].sum()) / math.sqrt(idx.size) if idx.size else 0.0
        )
        return raw * self.influence()

    def predict(self, article: Article) -> float:
        """Probability that this deployment's users find `article` relevant."""
        from bot.classify import lexicon_logit

        return _sigmoid(lexicon_logit(article) + self.correction(article))

    def influence(self) -> float:
        """How far (0..1) the corrections apply; grows with the amount of feedback."""
        n = self.n_examples
        return n / (n + _HALF_INFLUENCE_AT)

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
    from bot.classify import lexicon_logit

    rows: list[npt.NDArray[np.int64]] = []
    labels: list[float] = []
    offsets: list[float] = []
    for article, relevant in examples:
        rows.append(_features(article, bits))
        labels.append(1.0 if relevant else 0.0)
        offsets.append(lexicon_logit(article))
    n = len(rows)
    n_pos = int(sum(labels))
    weights = np.zeros(1 << bits, dtype=np.float64)
    bias = 0.0
    if n == 0:
        return FeedbackModel(weights, bias, n, n_pos, bits)
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
            z = offsets[i] + float(weights[idx].sum()) * s + bias
            g = _sigmoid(z) - y
            # Lazy L2 on the touched weights only keeps each update O(features of one row).
            weights[idx] -= lr * (g * s + l2 * weights[idx])
            bias -= lr * g * 0.1
    return FeedbackModel(weights, bias, n, n_pos, bits)


_current: dict[Path, tuple[float, FeedbackModel]] = {}


def load_current(path: Path | None) -> FeedbackModel | None:
    """The model at `path` if the file exists; read again only after `newsbot train` rewrote it."""
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    cached = _current.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, FeedbackModel.load(path))
        _current[path] = cached
    return cached[1]
