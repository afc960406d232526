"""A small relevance model trained on one deployment's own 👍/👎 judgements, on top of the lexicon.

The model re-weights the lexicon's *own* evidence per deployment and language instead of
learning thousands of word features from a few hundred clicks: the lexicon's log-odds and the
parts they are built from (`bot.classify.EVIDENCE`: lead and body-density sums of positive and
negative cues, the region prior, support of ambiguous cues, regions named) are the features of
an L2-regularised logistic regression whose offset is the lexicon's log-odds, so zero weights
are the lexicon itself and the penalty pulls towards it. Ten numbers a language.

It can only help, as far as the judgements can tell:

* a language is corrected only once it has `MIN_PER_SIDE` judgements on *each* side (one-sided
  feedback, e.g. only 👍 on alerts, changes nothing);
* the L2 strength is chosen by repeated, stratified cross-validation on the judgements alone,
  and the language is corrected only if the cross-validated F1 beats the lexicon's on them;
* one article's log-odds move at most `_CAP`;
* `retrain` keeps the previous model when the new one scores worse on a held-back slice.

Fitting is a few Newton steps on ten columns: milliseconds for 1,000 judgements. Saved as JSON.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.classify import EVIDENCE, lexicon_evidence
from bot.models import Article

log = logging.getLogger(__name__)

FORMAT_VERSION = 4
# Columns of a language's weights: the bias, the lexicon's log-odds (a slope on it), its parts.
COLUMNS = ("bias", "logit", *EVIDENCE)
# Judgements a language needs on each side (relevant / not) before it is corrected at all.
MIN_PER_SIDE = 10
# The largest change (in log-odds) the model may make to one article's lexicon score.
_CAP = 4.0
# L2 strengths tried (strongest first: ties go to the one closest to the lexicon).
_L2_GRID = (30.0, 10.0, 3.0, 1.0)
# The bias is barely penalised: a deployment's threshold may differ from the lexicon's.
_BIAS_L2_SHARE = 0.1
_FOLDS = 5
_REPEATS = 3
# Significance a language's cross-validated gain needs (one-sided sign test, see _significant).
_ALPHA = 0.05
_NEWTON_STEPS = 30
# Share of the judgements held back to check a re-trained model against the previous one.
HOLD_BACK = 0.2

Vector = npt.NDArray[np.float64]


def _sigmoid(z: float) -> float:
    if z < -40:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(slots=True)
class FeedbackModel:
    """Per-language re-weighting of the lexicon's evidence, learned from a deployment's feedback."""

    # Language -> one weight per COLUMNS entry; languages not listed keep the lexicon's score.
    weights: dict[str, tuple[float, ...]]
    n_examples: int
    n_positive: int
    # Language -> the L2 strength chosen (for corrected languages only).
    l2: dict[str, float] = field(default_factory=dict)
    # Language -> F1 on its judgements (lexicon, best cross-validated model), for every language
    # with enough judgements to tell: why it is corrected or not.
    cv_f1: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Language -> how many lexicon decisions the model fixed and broke out of fold (mean of the
    # repeats), the numbers the sign test judged.
    cv_changed: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n_negative(self) -> int:
        """How many judgements said "not relevant"."""
        return self.n_examples - self.n_positive

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages the corrections apply to: those where cross-validation showed they help."""
        return tuple(sorted(self.weights))

    def correction(self, article: Article, logit: float, evidence: Sequence[float]) -> float:
        """Change to the lexicon's log-odds `logit` of `article` (bot.classify.Correction)."""
        w = self.weights.get(article.lang)
        if w is None:
            return 0.0
        raw = w[0] + w[1] * logit + sum(wi * x for wi, x in zip(w[2:], evidence, strict=True))
        return _CAP * math.tanh(raw / _CAP)

    def predict(self, article: Article) -> float:
        """Probability that this deployment's users find `article` relevant."""
        logit, evidence = lexicon_evidence(article)
        return _sigmoid(logit + self.correction(article, logit, evidence))

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        doc = {
            "format": "newsbot-feedback-model",
            "version": FORMAT_VERSION,
            "columns": list(COLUMNS),
            "n_examples": self.n_examples,
            "n_positive": self.n_positive,
            "languages": {
                lang: {"weights": [round(v, 6) for v in w], "l2": self.l2.get(lang)}
                for lang, w in sorted(self.weights.items())
            },
            "cv_f1": {lang: list(f1s) for lang, f1s in sorted(self.cv_f1.items())},
            "cv_changed": {lang: list(fb) for lang, fb in sorted(self.cv_changed.items())},
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
        if (
            doc.get("format") != "newsbot-feedback-model"
            or doc.get("version") != FORMAT_VERSION
            or doc.get("columns") != list(COLUMNS)
        ):
            raise ValueError(f"{path}: not a newsbot feedback model (version {FORMAT_VERSION})")
        langs: Mapping[str, Mapping[str, object]] = doc["languages"]
        weights: dict[str, tuple[float, ...]] = {}
        l2: dict[str, float] = {}
        for lang, entry in langs.items():
            values = entry["weights"]
            if not isinstance(values, list) or len(values) != len(COLUMNS):
                raise ValueError(f"{path}: {lang}: expected {len(COLUMNS)} weights")
            weights[str(lang)] = tuple(float(v) for v in values)
            strength = entry.get("l2")
            if isinstance(strength, int | float):
                l2[str(lang)] = float(strength)
        scores: Mapping[str, Sequence[float]] = doc.get("cv_f1", {})
        cv_f1 = {str(lang): (float(pair[0]), float(pair[1])) for lang, pair in scores.items()}
        counts: Mapping[str, Sequence[float]] = doc.get("cv_changed", {})
        changed = {str(lang): (float(pair[0]), float(pair[1])) for lang, pair in counts.items()}
        n, n_pos = int(doc["n_examples"]), int(doc["n_positive"])
        return cls(weights, n, n_pos, l2, cv_f1, changed)


def _fit(x: Vector, offset: Vector, y: Vector, l2: float) -> Vector:
    """Weights minimising log loss of sigmoid(offset + x·w) + l2/2·|w|² (Newton's method)."""
    penalty = np.full(x.shape[1], l2)
    penalty[0] = l2 * _BIAS_L2_SHARE
    w = np.zeros(x.shape[1])
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(offset + x @ w, -40, 40)))
        grad = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return w


def _margins(x: Vector, offset: Vector, w: Vector) -> Vector:
    """Log-odds under weights `w`: the lexicon's plus the bounded correction."""
    return offset + _CAP * np.tanh((x @ w) / _CAP)


def _f1(yes: npt.NDArray[np.bool_], y: Vector) -> float:
    truth = y > 0.5
    tp = int(np.sum(yes & truth))
    wrong = int(np.sum(yes != truth))
    return 2 * tp / (2 * tp + wrong) if tp + wrong else 1.0


def _folds(ids: Sequence[str], y: Vector, repeat: int) -> npt.NDArray[np.int64]:
    """Stratified fold numbers, dealt in an order fixed by a hash of the article ids."""
    fold = np.zeros(len(ids), dtype=np.int64)
    for label in (0.0, 1.0):
        members = [i for i in range(len(ids)) if y[i] == label]
        members.sort(key=lambda i: zlib.crc32(f"{repeat}:{ids[i]}".encode()))
        for k, i in enumerate(members):
            fold[i] = k % _FOLDS
    return fold


def _significant(fixed: int, broken: int) -> bool:
    """Whether out-of-fold decisions the model fixed outnumber those it broke beyond chance.

    One-sided sign test on the judgements where model and lexicon disagree: the chance of
    `fixed` or more of them going the model's way if each were a coin toss is at most _ALPHA.
    """
    n = fixed + broken
    tail = sum(math.comb(n, k) for k in range(fixed, n + 1)) / 2**n if n else 1.0
    return fixed > broken and tail <= _ALPHA


@dataclass(frozen=True, slots=True)
class _Outcome:
    """Cross-validation of one L2 strength on one language's judgements."""

    f1: float  # mean out-of-fold F1 (at 0.5) over the repeats
    significant: bool  # changed decisions significantly more often right, in every repeat
    fixed: float  # lexicon decisions changed and now right, mean of the repeats
    broken: float  # lexicon decisions changed and now wrong, mean of the repeats


def _cross_validated(
    ids: Sequence[str], x: Vector, offset: Vector, y: Vector, l2: float
) -> _Outcome:
    """Out-of-fold F1 over repeated stratified folds, and what the changed decisions did."""
    truth = y > 0.5
    lexicon = offset >= 0
    scores = []
    significant = True
    fixed_total = broken_total = 0
    for repeat in range(_REPEATS):
        fold = _folds(ids, y, repeat)
        out = np.zeros(y.size)
        for k in range(_FOLDS):
            test = fold == k
            w = _fit(x[~test], offset[~test], y[~test], l2)
            out[test] = _margins(x[test], offset[test], w)
        model = out >= 0
        scores.append(_f1(model, y))
        changed = model != lexicon
        fixed = int(np.sum(changed & (model == truth)))
        broken = int(np.sum(changed)) - fixed
        significant &= _significant(fixed, broken)
        fixed_total += fixed
        broken_total += broken
    return _Outcome(
        float(np.mean(scores)), significant, fixed_total / _REPEATS, broken_total / _REPEATS
    )


@dataclass(frozen=True, slots=True)
class _Language:
    """A language's judgements as a design matrix (COLUMNS), lexicon offsets and labels."""

    ids: list[str]
    x: Vector
    offset: Vector
    y: Vector

    @classmethod
    def of(cls, rows: Sequence[tuple[str, float, Sequence[float], bool]]) -> _Language:
        x = np.array([[1.0, logit, *parts] for _, logit, parts, _ in rows], dtype=np.float64)
        return cls(
            [i for i, _, _, _ in rows],
            x.reshape(len(rows), len(COLUMNS)),
            np.array([logit for _, logit, _, _ in rows], dtype=np.float64),
            np.array([1.0 if yes else 0.0 for *_, yes in rows], dtype=np.float64),
        )


def _learn(data: _Language) -> tuple[float, float, _Outcome, Vector | None] | None:
    """(lexicon F1, L2, its cross-validation, weights or None if they do not help).

    None when the language has too few judgements on a side to tell.
    """
    positives = int(data.y.sum())
    if min(positives, data.y.size - positives) < MIN_PER_SIDE:
        return None
    lexicon = _f1(data.offset >= 0, data.y)
    best_l2, best = _L2_GRID[0], _Outcome(-1.0, False, 0.0, 0.0)
    for l2 in _L2_GRID:
        outcome = _cross_validated(data.ids, data.x, data.offset, data.y, l2)
        if outcome.f1 > best.f1 + 1e-9:
            best_l2, best = l2, outcome
    if best.f1 <= lexicon + 1e-9 or not best.significant:
        # On judgements they were not fitted on, corrections did not fix clearly more than
        # they broke (a gain of a few articles is as likely luck of the split as a lesson):
        # the lexicon is left alone for this language.
        return lexicon, best_l2, best, None
    return lexicon, best_l2, best, _fit(data.x, data.offset, data.y, best_l2)


def train(examples: Iterable[tuple[Article, bool]]) -> FeedbackModel:
    """Fit a FeedbackModel on (article, relevant?) judgements, language by language."""
    by_lang: dict[str, list[tuple[str, float, Sequence[float], bool]]] = {}
    n = n_pos = 0
    for article, relevant in examples:
        logit, parts = lexicon_evidence(article)
        by_lang.setdefault(article.lang, []).append((article.id, logit, parts, relevant))
        n += 1
        n_pos += bool(relevant)
    model = FeedbackModel({}, n, n_pos)
    for lang, rows in sorted(by_lang.items()):
        learned = _learn(_Language.of(rows))
        if learned is None:
            continue
        lexicon, l2, outcome, w = learned
        model.cv_f1[lang] = (round(lexicon, 4), round(outcome.f1, 4))
        model.cv_changed[lang] = (round(outcome.fixed, 2), round(outcome.broken, 2))
        if w is not None:
            model.weights[lang] = tuple(float(v) for v in w)
            model.l2[lang] = l2
    return model


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
    # Good on the slice it never saw: now learn from every judgement, for the languages the
    # slice checked (a language with too few judgements to be corrected then stays as it was).
    final = train(examples)
    for lang in set(final.languages).difference(candidate.languages):
        del final.weights[lang]
        final.l2.pop(lang, None)
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
        except (ValueError, KeyError, TypeError, OSError) as exc:
            # A model of an older format (or a broken file) must not stop ingest: classify
            # with the lexicon alone until `newsbot train` or the nightly job replaces it.
            log.warning("feedback model %s not used: %s", path, exc)
            return None
        _current[path] = cached
    return cached[1]
