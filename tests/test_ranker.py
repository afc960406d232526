import math

import pytest

from bot import ranker
from bot.models import Article
from bot.qa import Index, answer_article
from bot.question import analyse

# Hand-written: two people, one near the question's words, one at the end of the sentence.
TALKS = Article(
    id="t-en-talks",
    title="",
    text=(
        "Foreign minister Anna Berg attended the talks in Oslo on Monday, "
        "together with the trade envoy Carl Holm."
    ),
    lang="en",
)


def test_a_record_for_other_features_is_not_used() -> None:
    n = len(ranker.FEATURES)
    record = {"features": ["other"], "mean": [0.0], "scale": [1.0], "weights": [1.0]}
    assert ranker.from_record(record) is None
    record = {"features": list(ranker.FEATURES), "mean": [0.0] * n, "scale": [0.0] * n}
    model = ranker.from_record({**record, "weights": [0.0] * n, "base": 2.0})
    assert model is not None and model.scale == (1.0,) * n  # a constant feature divides by 1
    assert model.score(tuple(float(i) for i in range(n))) == 0.0  # base × log_hand (0)


def test_no_weights_ship_and_the_hand_score_chooses() -> None:
    assert ranker.model() is None


def test_a_fitted_ranker_chooses_the_span_and_the_hand_score_stays_the_confidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = Index.build([TALKS])
    q = analyse("Who attended the talks?", index)
    trace: list[tuple[tuple[float, ...], str]] = []
    hand = answer_article(q, TALKS, index, trace=trace)
    assert hand is not None and "Anna Berg" in hand.text
    assert len(trace) >= 2 and all(len(f) == len(ranker.FEATURES) for f, _ in trace)
    assert max(math.exp(f[0]) for f, _ in trace) == pytest.approx(hand.score, rel=1e-6)
    # A ranker that prefers candidates late in the sentence picks the envoy instead.
    n = len(ranker.FEATURES)
    weights = [0.0] * n
    weights[ranker.FEATURES.index("span_pos")] = 10.0
    late = ranker.Model((0.0,) * n, (1.0,) * n, tuple(weights), base=0.0)
    monkeypatch.setattr(ranker, "model", lambda: late)
    chosen = answer_article(q, TALKS, index)
    assert chosen is not None and "Carl Holm" in chosen.text
    assert chosen.score == hand.score  # abstention and the choice of article stay the hand's
    assert answer_article(q, TALKS, index, learned=False) == hand
