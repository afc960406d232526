"""The learned span ranker: one linear score per candidate answer, weights from a data file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# The features of one candidate, in the order of the weights (bot/data/qa/ranker.json).
FEATURES: tuple[str, ...] = (
    "log_hand",  # log of the hand-weighted score (coverage × fit × type × position factors)
    "log_window",  # weighted share of question groups in the sentence (neighbours 0.4)
    "own_cover",  # share of question groups in the candidate's own sentence
    "log_fit",  # the kind's fit to the question type (question.TYPES)
    "log_type",  # unit, place-kind and time factors (qa._type_factor)
    "near",  # exp(-distance / 6) to the nearest matched question word
    "dist_any",  # that distance / 10, capped at 3 (3 when nothing matched)
    "dist_concept",  # distance to the nearest matched non-name word (the asked relation)
    "dist_entity",  # distance to the nearest matched name of the question
    "after_entity",  # the candidate follows the nearest matched name within 4 tokens
    "same_clause",  # shares a clause (split at , ; : ( ) –) with a matched word
    "closest",  # the nearest candidate of its sentence to the matched words
    "rank_near",  # its rank by that distance among the sentence's candidates / 5, capped at 1
    "head_next",  # the head noun of "which N" stands right next to it
    "head_apart",  # the question has a head noun that does not stand next to it
    "dateline",  # a place of the wire dateline
    "log_agree",  # role and nationality agreement (person questions)
    "log_country",  # the question's countries are absent from its sentence
    "related",  # its sentence or a neighbour has a non-name question word
    "sent_pos",  # sentence position in the article (0 first, 1 last)
    "first_sent",  # in the first sentence
    "span_pos",  # start token / sentence length
    "span_len",  # log of its token count
    "q_overlap",  # share of its tokens that are matched question words
    "common",  # a capitalised common word
    "has_unit",  # a number with its unit
    "in_parens",  # inside brackets
    "kind_person",
    "kind_name",
    "kind_org",
    "kind_place",
    "kind_time",
    "kind_number",
    "kind_list",
    "numeric_near",  # near × a numeric question (distance matters more for numbers)
    "entity_q_dist",  # dist_entity × a person/org/entity question (the asked organisation)
    "cross_cover",  # own_cover × question and article in different languages
    "cross_near",  # near × different languages
    "cross_concept",  # dist_concept × different languages
    "cross_hand",  # log_hand × different languages
    "place_near",  # near × a place question
    "time_near",  # near × a time question
    "person_near",  # near × a person question
)


@dataclass(frozen=True, slots=True)
class Model:
    """Standardisation and weights of the linear ranker."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    # The hand-weighted log score enters with this fixed weight; the fitted weights correct it.
    base: float = 1.0

    def score(self, x: tuple[float, ...]) -> float:
        """The candidate's ranking score (higher is better; comparable within one question)."""
        return self.base * x[0] + math.fsum(
            w * (v - m) / s
            for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True)
        )


def from_record(raw: dict[str, Any]) -> Model | None:
    """A model from its JSON record, or None if it was fitted on other features."""
    if tuple(raw.get("features", ())) != FEATURES:
        return None
    return Model(
        tuple(float(v) for v in raw["mean"]),
        tuple(float(v) or 1.0 for v in raw["scale"]),
        tuple(float(v) for v in raw["weights"]),
        float(raw.get("base", 1.0)),
    )


@cache
def model() -> Model | None:
    """The shipped ranker (bot/data/qa/ranker.json), or None when it does not fit FEATURES."""
    path = resources.files("bot") / "data" / "qa" / "ranker.json"
    if not path.is_file():
        return None
    return from_record(json.loads(path.read_text(encoding="utf-8")))
