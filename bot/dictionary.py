"""The DE↔EN word lexicon derived from the Ding dictionary: translations of comparison keys."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data" / "dictionary"
LANGUAGES = frozenset({"de", "en"})


@functools.cache
def _table(source: str, target: str) -> dict[str, str]:
    """Key -> space-separated translation keys for one direction, read on first use."""
    with gzip.open(DATA_DIR / f"{source}-{target}.tsv.gz", "rt", encoding="utf-8") as fh:
        text = fh.read()
    # Values stay unsplit strings: loading is one pass, splitting happens per looked-up word.
    return dict(
        line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def translate(key: str, source: str, target: str) -> tuple[str, ...]:
    """The comparison keys of `key`'s translations from language `source` into `target`."""
    if source == target or source not in LANGUAGES or target not in LANGUAGES:
        return ()
    found = _table(source, target).get(key)
    return tuple(found.split()) if found else ()


def size(source: str = "de", target: str = "en") -> int:
    """How many head words one direction of the lexicon has."""
    return len(_table(source, target))
