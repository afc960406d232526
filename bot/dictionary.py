"""The DE↔EN word lexicon derived from the Ding dictionary: translations of comparison keys."""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from bot import lemmas
from bot.memo import Memo

DATA_DIR = Path(__file__).resolve().parent / "data" / "dictionary"
LANGUAGES = frozenset({"de", "en"})


@functools.cache
def _table(source: str, target: str) -> Mapping[str, str]:
    """Key -> space-separated translation keys for one direction, opened on first use.

    Reading the 160,000 lines costs ~0.3 s of CPU per direction and process; the first use
    copies them into a table in the cache folder (named by the file's content hash, so a new
    lexicon makes a new table) and later processes look words up there.
    """
    path = DATA_DIR / f"{source}-{target}.tsv.gz"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    table = lemmas.cached_table(f"lexicon-{source}-{target}-{digest}.sqlite3", lambda: _read(path))
    return table if table is not None else dict(_read(path))


def _read(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    # Values stay unsplit strings: splitting happens per looked-up word.
    pairs = (line.split("\t", 1) for line in text.splitlines() if line and line[0] != "#")
    return [(k, v) for k, v in pairs]


def translate(key: str, source: str, target: str) -> tuple[str, ...]:
    """The comparison keys of `key`'s translations from language `source` into `target`."""
    if source == target or source not in LANGUAGES or target not in LANGUAGES:
        return ()
    return _translations(source, target)[key]


@functools.cache
def _translations(source: str, target: str) -> Memo[tuple[str, ...]]:
    """Translations by key for one direction, looked up once per key (story signatures ask
    for the same words again and again)."""

    def look_up(key: str) -> tuple[str, ...]:
        found = _table(source, target).get(key)
        return tuple(found.split()) if found else ()

    return Memo(look_up)


def first_translated(
    keys: Sequence[str], source: str, target: str
) -> tuple[str, tuple[str, ...]] | None:
    """The first of `keys` that has translations, with them; one query for all the keys."""
    if source == target or source not in LANGUAGES or target not in LANGUAGES or not keys:
        return None
    table = _table(source, target)
    if isinstance(table, lemmas.Table):
        rows = table.get_many(list(keys))
    else:
        rows = {k: v for k in keys if (v := table.get(k)) is not None}
    for key in keys:
        found = tuple(rows[key].split()) if key in rows else ()
        if found:
            return key, found
    return None


def size(source: str = "de", target: str = "en") -> int:
    """How many head words one direction of the lexicon has."""
    return len(_table(source, target))
