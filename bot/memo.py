"""Bounded per-process memo tables for per-word work (lemmas, comparison keys, word features)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

V = TypeVar("V")


class Memo(dict[str, V]):
    """`memo[word]` is `compute(word)`, computed once per word while at most `limit` are kept.

    A dict subclass so that a hit is a plain dict lookup (in C, also through `map`), which
    is what per-token loops over thousands of articles need; `functools.lru_cache` costs a
    Python call and a tuple key per lookup. When full it starts afresh: words recur, and
    bounded memory matters more in a long-running bot than a few recomputed words.
    """

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[str], V], limit: int = 200_000) -> None:
        """A memo of `compute` keeping at most `limit` words."""
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, word: str) -> V:
        if len(self) >= self._limit:
            self.clear()
        value = self[word] = self._compute(word)
        return value
