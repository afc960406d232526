"""simplemma's lemma dictionaries as read-only SQLite tables: looked up per word, not loaded.

simplemma ships each language's dictionary lzma-compressed and decodes all of it (1.1 million
German entries, about a second of CPU) before the first lookup, which every `newsbot ask`
paid. The first use of a language copies simplemma's own data (MIT licence, same entries)
into a table in the cache folder once; afterwards opening it costs nothing and a lookup is one
indexed read. When the cache folder cannot be written the in-memory dictionary is used.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import simplemma
from simplemma.language_detector import LanguageDetector
from simplemma.strategies import DefaultStrategy, DictionaryLookupStrategy, RulesStrategy
from simplemma.strategies.dictionaries.dictionary_factory import DefaultDictionaryFactory
from simplemma.token_sampler import MostCommonTokenSampler, RelaxedMostCommonTokenSampler

log = logging.getLogger(__name__)

_VERSION = getattr(simplemma, "__version__", "0")


def cache_dir() -> Path:
    """Where the tables live: $NEWSBOT_CACHE_DIR, else the user's cache folder."""
    explicit = os.environ.get("NEWSBOT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "newsbot"


def table_path(lang: str, folder: Path | None = None) -> Path:
    """The table file of one language for the installed simplemma version."""
    return (folder or cache_dir()) / f"simplemma-{_VERSION}-{lang}.sqlite3"


class Table(Mapping[str, str]):
    """One language's word -> lemma table on disk; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        """Open an existing table read-only."""
        # immutable: the file is never written after it was renamed into place.
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._len: int | None = None

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """The lemma of `key`, or `default` (the hot path: no exception on a miss)."""
        with self._lock:
            row = self._conn.execute("SELECT v FROM lemmas WHERE k = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else default

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The entries of those `keys` the table has, with one query per 500 keys."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            sql = f"SELECT k, v FROM lemmas WHERE k IN ({', '.join('?' * len(chunk))})"
            with self._lock:
                found.update((str(k), str(v)) for k, v in self._conn.execute(sql, chunk))
        return found

    def __getitem__(self, key: str) -> str:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            keys = [str(r[0]) for r in self._conn.execute("SELECT k FROM lemmas")]
        return iter(keys)

    def __len__(self) -> int:
        if self._len is None:
            with self._lock:
                self._len = int(self._conn.execute("SELECT count(*) FROM lemmas").fetchone()[0])
        return self._len


def build(lang: str, path: Path) -> None:
    """Write simplemma's dictionary of `lang` to `path` (a temporary file renamed into place)."""
    write_table(path, DefaultDictionaryFactory().get_dictionary(lang).items())


def write_table(path: Path, items: Iterable[tuple[str, str]]) -> None:
    """Write a word table to `path` (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("CREATE TABLE lemmas (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID")
            conn.executemany("INSERT OR REPLACE INTO lemmas VALUES (?, ?)", items)
            conn.commit()
        finally:
            conn.close()
        # Concurrent first uses each write their own file; the last rename wins, all are equal.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_table(
    name: str, items: Callable[[], Iterable[tuple[str, str]]]
) -> Mapping[str, str] | None:
    """The table `name` in the cache folder, written from `items()` on first use; None if the
    folder cannot be written (the caller keeps its data in memory then)."""
    path = cache_dir() / name
    try:
        if not path.exists():
            write_table(path, items())
        return Table(path)
    except (OSError, sqlite3.Error) as exc:
        log.info("word table %s unavailable (%s); reading it into memory", path, exc)
        return None


class TableFactory:
    """simplemma's DictionaryFactory over the on-disk tables (built on first use of a language)."""

    def __init__(self, folder: Path | None = None) -> None:
        """Tables in `folder` (default: `cache_dir()` at first use)."""
        self._folder = folder
        self._lock = threading.Lock()
        self._tables: dict[str, Mapping[str, str]] = {}

    def get_dictionary(self, lang: str) -> Mapping[str, str]:
        """The table of `lang`, opened (or built) once."""
        found = self._tables.get(lang)
        if found is not None:
            return found
        with self._lock:
            if lang not in self._tables:
                self._tables[lang] = self._open(lang)
            return self._tables[lang]

    def _open(self, lang: str) -> Mapping[str, str]:
        path = table_path(lang, self._folder)
        try:
            if not path.exists():
                build(lang, path)
            return Table(path)
        except (OSError, sqlite3.Error) as exc:
            # A read-only home or a full disk costs start-up time, not answers.
            log.info("lemma table %s unavailable (%s); using simplemma's in-memory one", path, exc)
            return DefaultDictionaryFactory().get_dictionary(lang)


FACTORY = TableFactory()
_LOOKUP = DictionaryLookupStrategy(FACTORY)
_RULES = RulesStrategy()
_FULL = simplemma.Lemmatizer(lemmatization_strategy=DefaultStrategy(dictionary_factory=FACTORY))


def lookup(word: str, lang: str) -> str | None:
    """The dictionary lemma of `word` (also tried with the other first-letter case), or None."""
    return _LOOKUP.get_lemma(word, lang)


def rules(word: str, lang: str) -> str | None:
    """The lemma by simplemma's suffix rules, or None."""
    return _RULES.get_lemma(word, lang)


@functools.lru_cache(maxsize=100_000)
def lemmatize(word: str, lang: str) -> str:
    """simplemma's full lemmatiser (dictionary, compounds, rules) over the tables."""
    return str(_FULL.lemmatize(word, lang))


def is_known(word: str, lang: str) -> bool:
    """Whether the dictionary of `lang` has `word`."""
    return _LOOKUP.get_lemma(word, lang) is not None


def detect(text: str, langs: tuple[str, ...]) -> list[tuple[str, float]]:
    """simplemma's language detection over the tables: (language, share) best first."""
    strategy = DefaultStrategy(dictionary_factory=FACTORY)
    ranked: list[tuple[str, float]] = []
    for sampler in (MostCommonTokenSampler(), RelaxedMostCommonTokenSampler()):
        shares = LanguageDetector(langs, sampler, strategy).proportion_in_each_language(text)
        ranked = sorted(shares.items(), key=lambda kv: (kv[0] == "unk", -kv[1]))
        if len(ranked) == 1 or ranked[0][1] != ranked[1][1]:
            break  # the relaxed sampler only breaks ties, as in simplemma.langdetect
    return ranked
