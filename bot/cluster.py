"""Story clustering: the same event reported by several sources is one story, alerted once."""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Sequence

from bot.models import Article

_WORD = re.compile(r"\w+", re.UNICODE)
TITLE_JACCARD = 0.6
TEXT_JACCARD = 0.5
_TEXT_CHARS = 1200
_SKETCH = 8


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def title_terms(article: Article) -> frozenset[str]:
    """Distinctive title words (4+ letters), case-folded."""
    return frozenset(w for w in _words(article.title) if len(w) >= 4)


def shingles(article: Article) -> frozenset[int]:
    """Hashed word 3-grams of the start of the text: near-duplicates share most of them."""
    words = _words(article.text[:_TEXT_CHARS])
    return frozenset(
        zlib.crc32(" ".join(words[i : i + 3]).encode()) for i in range(max(0, len(words) - 2))
    )


def _jaccard(a: frozenset[str] | frozenset[int], b: frozenset[str] | frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class Stories:
    """Known articles indexed by title word, to find the story a new article belongs to."""

    def __init__(self) -> None:
        self._postings: defaultdict[str, list[int]] = defaultdict(list)
        self._entries: list[tuple[str, frozenset[str], frozenset[int]]] = []

    def add(self, article: Article, story_id: str) -> None:
        """Remember `article` as part of `story_id`."""
        terms, text = title_terms(article), shingles(article)
        position = len(self._entries)
        self._entries.append((story_id, terms, text))
        for key in _keys(terms, text):
            self._postings[key].append(position)

    def find(self, article: Article) -> str | None:
        """The story `article` reports again, if any."""
        terms, text = title_terms(article), shingles(article)
        overlap: defaultdict[int, int] = defaultdict(int)
        for key in _keys(terms, text):
            for position in self._postings.get(key, ()):
                overlap[position] += 1
        # Most overlapping candidates first; at most a few full comparisons per article.
        for position, _count in sorted(overlap.items(), key=lambda kv: -kv[1])[:20]:
            story_id, other_terms, other_shingles = self._entries[position]
            if len(terms) >= 3 and _jaccard(terms, other_terms) >= TITLE_JACCARD:
                return story_id
            if _jaccard(text, other_shingles) >= TEXT_JACCARD:
                return story_id
        return None


def _keys(terms: frozenset[str], text: frozenset[int]) -> list[str]:
    # Title words, plus the smallest shingle hashes (a bottom-k sketch): near-duplicate texts
    # share most of their sketch even when their titles share no word.
    return [f"t:{term}" for term in terms] + [f"s:{value}" for value in sorted(text)[:_SKETCH]]


def assign(new: Sequence[Article], known: Sequence[tuple[Article, str]]) -> dict[str, str]:
    """Story id of each new article: an earlier report's story, else the article's own id."""
    stories = Stories()
    new_ids = {a.id for a in new}
    earlier: dict[str, str] = {}
    for article, story_id in known:
        # A changed article is compared with others, never with its own earlier version.
        if article.id not in new_ids:
            stories.add(article, story_id)
        else:
            earlier[article.id] = story_id
    assigned: dict[str, str] = {}
    for article in new:
        # An edited article keeps its story: the ledger keys alerts by story, so it alerts
        # again only if it newly crosses the threshold.
        story = earlier.get(article.id) or stories.find(article) or article.id
        assigned[article.id] = story
        stories.add(article, story)
    return assigned
