"""Retrieval of articles for a question: BM25 over lemma keys, in memory or in the database.

The database index (SQLite FTS5, PostgreSQL tsvector + GIN) holds each article's comparison keys
sentence by sentence. The store writes it in the same transaction as the article (`documents`
before, `put` inside), and deleting an article deletes its row, so every instance shares one
index and nothing is rebuilt at start. `StoreIndex` reads it from any thread.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bot import collector
from bot.extract import FALLBACK_LANG, Sentence, analyse_article, index_keys, languages
from bot.memo import Memo
from bot.models import Article
from bot.question import Group, analyse
from bot.text import sentences

if TYPE_CHECKING:
    # numpy and SQLAlchemy are imported where they are used: `newsbot ask` on a SQLite store
    # needs neither (their imports cost more CPU than answering the question).
    from asyncio import AbstractEventLoop
    from concurrent.futures import Future

    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

# BM25 parameters; b is low because the store mixes 40-word feed items with 500-word articles,
# and full length normalisation would bury every long article; then how much a prior lifts a score.
BM25_K1 = 1.2
BM25_B = 0.3
PRIOR_STRENGTH = 0.25
# How many BM25 hits are re-ranked by how many question words share one sentence.
RERANK_TOP = 60
# How many full-text hits the database returns before they are scored like the memory index.
CANDIDATES = 150
# Analysed articles kept per index: a reply thread asks several questions about one article.
ANALYSED_CACHE = 256
SENTENCE_BREAK = " | "
# Terms this common (IDF below that of a word in ~10% of articles) do not select candidates.
COMMON_IDF = math.log(1 + 9.5 / 1.5)
# How long the article count and mean length are reused before being read again.
STATS_SECONDS = 30.0

T = TypeVar("T")


class Retrieval(Protocol):
    """What answering needs from an index: articles by id, statistics and ranked search."""

    def add(self, article: Article, weight: float = 0.0) -> None:
        """Take note of a new or changed article (with its conflict score as prior)."""

    def get(self, article_id: str) -> Article | None:
        """The article with this id, if indexed."""

    def __len__(self) -> int:
        """How many articles are indexed."""

    def idf(self, key: str) -> float:
        """Inverse document frequency of a key."""

    def idfs(self, keys: Iterable[str]) -> dict[str, float]:
        """Inverse document frequencies of several keys at once."""

    def analysed(self, article: Article) -> tuple[Sentence, ...]:
        """The article's analysed sentences (cached)."""

    def search_groups(self, groups: Iterable[Group], k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for keyword groups, best first."""


def article_lang(article: Article) -> str:
    """The language whose data analyses this article."""
    return article.lang if article.lang in languages() else FALLBACK_LANG


def sentence_keys(article: Article) -> list[Counter[str]]:
    """The comparison-key counts of each sentence of an article (title first)."""
    lang = article_lang(article)
    out = []
    for chunk in sentences(f"{article.title}\n{article.text}", lang):
        keys = index_keys(chunk, lang)
        if keys:
            out.append(keys)
    return out


def _idf(n: int, df: int) -> float:
    return math.log(1 + (max(n, 1) - df + 0.5) / (df + 0.5))


def _sentence_sets(keys: str) -> tuple[frozenset[str], ...]:
    """The terms of each sentence of a full-text row."""
    return tuple(frozenset(s.split()) for s in keys.split(SENTENCE_BREAK))


def _coherence(sentences: Sequence[frozenset[str]], groups: Sequence[Group]) -> float:
    """The largest weighted share of keyword groups that occur together in one sentence."""
    weights = [g.weight * (1.5 if g.entity else 1.0) for g in groups]
    total = sum(weights) or 1.0
    best = 0.0
    for keys in sentences:
        share = sum(w for g, w in zip(groups, weights, strict=True) if not g.keys.isdisjoint(keys))
        best = max(best, share)
    return best / total


class _Analysed:
    """A bounded cache of analysed articles, safe to share between worker threads."""

    def __init__(self, size: int = ANALYSED_CACHE) -> None:
        self._items: OrderedDict[str, tuple[Sentence, ...]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, article: Article, keep: bool = True) -> tuple[Sentence, ...]:
        key = f"{article.id}\0{hash((article.title, article.text))}"
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        found = analyse_article(article)
        if keep:
            with self._lock:
                self._items[key] = found
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return found

    def forget(self, article_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.split("\0", 1)[0] == article_id]:
                del self._items[key]


class MemoryIndex:
    """An in-memory BM25 index over articles, for tests, benchmarks and one-off batches."""

    def __init__(self) -> None:
        self._articles: list[Article] = []
        self._by_id: dict[str, int] = {}
        self._lengths: list[int] = []
        self._priors: list[float] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._analysed = _Analysed(size=1_000_000)
        self._sentence_keys: list[tuple[frozenset[str], ...]] = []

    @classmethod
    def build(
        cls, articles: Iterable[Article], weights: Mapping[str, float] | None = None
    ) -> MemoryIndex:
        """Index `articles`; `weights` is an optional per-article prior in 0..1 (conflict score)."""
        index = cls()
        weights = weights or {}
        for article in articles:
            index.add(article, weights.get(article.id, 0.0))
        return index

    def add(self, article: Article, weight: float = 0.0) -> None:
        """Add (or replace) one article."""
        if article.id in self._by_id:
            self._remove(article.id)
        per_sentence = sentence_keys(article)
        counts: Counter[str] = Counter()
        for keys in per_sentence:
            counts.update(keys)
        doc = len(self._articles)
        self._articles.append(article)
        self._sentence_keys.append(tuple(frozenset(k) for k in per_sentence))
        self._by_id[article.id] = doc
        self._lengths.append(sum(counts.values()))
        self._priors.append(float(weight))
        for key, tf in counts.items():
            self._postings.setdefault(key, []).append((doc, tf))

    def _remove(self, article_id: str) -> None:
        doc = self._by_id[article_id]
        for key, plist in list(self._postings.items()):
            kept = [(d, tf) for d, tf in plist if d != doc]
            if kept:
                self._postings[key] = kept
            else:
                del self._postings[key]
        self._lengths[doc] = 0
        self._sentence_keys[doc] = ()
        self._analysed.forget(article_id)
        del self._by_id[article_id]

    def get(self, article_id: str) -> Article | None:
        """The article with this id, if indexed."""
        doc = self._by_id.get(article_id)
        return None if doc is None else self._articles[doc]

    def __len__(self) -> int:
        return len(self._by_id)

    def idf(self, key: str) -> float:
        """Inverse document frequency of a key (BM25 form, never negative)."""
        return _idf(len(self._by_id), len(self._postings.get(key, ())))

    def idfs(self, keys: Iterable[str]) -> dict[str, float]:
        """Inverse document frequencies of several keys."""
        return {k: self.idf(k) for k in keys}

    def analysed(self, article: Article) -> tuple[Sentence, ...]:
        """The article's analysed sentences, computed once."""
        return self._analysed.get(article, keep=article.id in self._by_id)

    def search(self, query: str, k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for a query (a question or keywords), best first."""
        return self.search_groups(analyse(query, self).groups, k)

    def search_groups(self, groups: Iterable[Group], k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for keyword groups: BM25, one term per group (its best alias)."""
        import numpy as np

        groups = list(groups)
        if not self._by_id:
            return []
        n = len(self._articles)
        lengths = np.asarray(self._lengths, dtype=np.float64)
        avg = float(lengths[lengths > 0].mean()) if (lengths > 0).any() else 1.0
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / avg)
        total = np.zeros(n)
        for group in groups:
            best = np.zeros(n)
            for key in group.keys:
                plist = self._postings.get(key)
                if not plist:
                    continue
                docs = np.fromiter((d for d, _ in plist), dtype=np.int64, count=len(plist))
                tfs = np.fromiter((tf for _, tf in plist), dtype=np.float64, count=len(plist))
                scores = self.idf(key) * tfs * (BM25_K1 + 1) / (tfs + norm[docs])
                np.maximum.at(best, docs, scores)
            total += best * (1.5 if group.entity else 1.0)
        total *= 1 + PRIOR_STRENGTH * np.asarray(self._priors)
        live = np.zeros(n, dtype=bool)
        live[list(self._by_id.values())] = True
        total[~live] = 0
        order = [int(i) for i in np.argsort(-total)[: max(k, RERANK_TOP)] if total[i] > 0]
        if len(groups) > 1:
            # Vague questions ("Who attends from Germany?") match many short items that merely
            # mention one word; an article where the question's words meet in one sentence wins.
            rerank = {
                i: total[i] * (0.5 + _coherence(self._sentence_keys[i], groups)) for i in order
            }
            order.sort(key=lambda i: -rerank[i])
            return [(self._articles[i], float(rerank[i])) for i in order[:k]]
        return [(self._articles[i], float(total[i])) for i in order[:k]]


# --- the database index -------------------------------------------------------------------------

_TERM = re.compile(r"\W+")


@functools.lru_cache(maxsize=200_000)
def term(key: str) -> str:
    """A key as one full-text token (letters and digits only, as both tokenisers keep it)."""
    return _TERM.sub("", key).replace("_", "")


@dataclass(frozen=True, slots=True)
class Document:
    """An article's row in the full-text index: its keys sentence by sentence."""

    article_id: str
    keys: str
    length: int


_TERMS = Memo(term)


def document(article: Article) -> Document:
    """The full-text row of one article (CPU work: call it off the event loop)."""
    sentences = []
    length = 0
    for counts in sentence_keys(article):
        # Each key as often as it occurs, in first-seen order; keys of no letters or digits drop.
        words = [w for w in map(_TERMS.__getitem__, counts.elements()) if w]
        length += len(words)
        sentences.append(" ".join(words))
    return Document(article.id, SENTENCE_BREAK.join(sentences), length)


def documents(batch: Iterable[Article]) -> dict[str, Document]:
    """Full-text rows of articles by id (CPU work: call it off the event loop)."""
    with collector.paused():  # the rows hold no cycles (see bot.collector)
        return {a.id: document(a) for a in batch}


def create_schema(conn: Connection) -> None:
    """Schema step: the full-text index of articles (FTS5 on SQLite, tsvector + GIN on PG)."""
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS search_docs ("
                " article_id VARCHAR(200) PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,"
                " keys TEXT NOT NULL, length INTEGER NOT NULL, tsv TSVECTOR NOT NULL)"
            )
        )
        conn.execute(
            sa.text("CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING GIN (tsv)")
        )
    else:
        _create_sqlite(conn)
    # Articles stored before this step get their rows now, once.
    rows = conn.execute(sa.text("SELECT id, title, text, lang FROM articles")).all()
    put(conn, [Article(id=r[0], title=r[1], text=r[2], lang=r[3]) for r in rows])


def _create_sqlite(conn: Connection) -> None:
    import sqlalchemy as sa

    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS search_docs ("
            " doc INTEGER PRIMARY KEY,"
            " article_id VARCHAR(200) NOT NULL UNIQUE REFERENCES articles(id) ON DELETE CASCADE,"
            " length INTEGER NOT NULL)"
        )
    )
    conn.execute(sa.text("CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(keys)"))
    conn.execute(
        sa.text("CREATE VIRTUAL TABLE IF NOT EXISTS search_vocab USING fts5vocab(search_fts, row)")
    )
    # Deleting an article (prune, cascade) must delete its full-text row too.
    conn.execute(
        sa.text(
            "CREATE TRIGGER IF NOT EXISTS search_docs_gone AFTER DELETE ON search_docs"
            " BEGIN DELETE FROM search_fts WHERE rowid = old.doc; END"
        )
    )


def put(
    conn: Connection, batch: Sequence[Article], docs: Mapping[str, Document] | None = None
) -> None:
    """Write (or replace) the full-text rows of stored articles, in the caller's transaction."""
    if not batch:
        return
    import sqlalchemy as sa

    docs = docs or {}
    rows = [docs.get(a.id) or document(a) for a in batch]
    ids = [d.article_id for d in rows]
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("DELETE FROM search_docs WHERE article_id = ANY(:ids)"), {"ids": ids})
        conn.execute(
            sa.text(
                "INSERT INTO search_docs (article_id, keys, length, tsv)"
                " VALUES (:id, :keys, :length, to_tsvector('simple', :keys))"
            ),
            [{"id": d.article_id, "keys": d.keys, "length": d.length} for d in rows],
        )
        return
    # Batched: a few statements per chunk, not two per article (ingest writes thousands).
    delete, insert_doc, doc_ids, insert_fts = _sqlite_statements()
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        chunk_ids = [d.article_id for d in chunk]
        conn.execute(delete, {"ids": chunk_ids})
        conn.execute(insert_doc, [{"id": d.article_id, "length": d.length} for d in chunk])
        found = conn.execute(doc_ids, {"ids": chunk_ids})
        doc_of: dict[str, int] = {str(row[0]): int(row[1]) for row in found}
        conn.execute(insert_fts, [{"doc": doc_of[d.article_id], "keys": d.keys} for d in chunk])


@functools.cache
def _sqlite_statements() -> tuple[sa.TextClause, sa.TextClause, sa.TextClause, sa.TextClause]:
    """`put`'s SQLite statements, built once (at first use: SQLAlchemy is imported lazily)."""
    import sqlalchemy as sa

    return (
        sa.text("DELETE FROM search_docs WHERE article_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        ),
        sa.text("INSERT INTO search_docs (article_id, length) VALUES (:id, :length)"),
        sa.text("SELECT article_id, doc FROM search_docs WHERE article_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        ),
        sa.text("INSERT INTO search_fts (rowid, keys) VALUES (:doc, :keys)"),
    )


def forget(conn: Connection, article_ids: sa.Select[Any]) -> None:
    """Delete the full-text rows of articles about to be deleted, in the caller's transaction."""
    import sqlalchemy as sa

    docs = sa.table("search_docs", sa.column("article_id"))
    conn.execute(docs.delete().where(docs.c.article_id.in_(article_ids)))


_SQLITE_URL = re.compile(r"sqlite(?:\+aiosqlite)?:///([^?#%]+)")


def sqlite_file(url: str | sa.URL) -> str | None:
    """The file of a plain SQLite URL (no query options), else None (`:memory:`, PostgreSQL)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    found = _SQLITE_URL.fullmatch(text)
    return None if found is None or found.group(1) == ":memory:" else found.group(1)


class _SQLiteReader:
    """Queries on a SQLite file with the standard library's driver, one connection per thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def rows(self, sql: str, params: Mapping[str, Any], expand: Mapping[str, bool]) -> list[Any]:
        """The rows of one statement; `expand` names list parameters (`IN :ids`), as sa.text."""
        values = dict(params)
        for name in expand:
            items = list(values.pop(name))
            names = [f"{name}_{i}" for i in range(len(items))]
            values.update(zip(names, items, strict=True))
            marks = ", ".join(f":{n}" for n in names)
            sql = re.sub(rf":{name}\b", f"({marks})", sql)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # The same defaults as aiosqlite under the store's engine (a 5 s busy timeout).
            conn = sqlite3.connect(self._path, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn.execute(sql, values).fetchall()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()


class _Loop:
    """A private event loop in a daemon thread, so synchronous callers can use the async engine."""

    def __init__(self) -> None:
        import asyncio  # with the async engine only (a SQLite file is read without a loop)

        self.loop: AbstractEventLoop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio

        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class StoreIndex:
    """The database's full-text index, queried from any thread (the service's worker threads)."""

    def __init__(self, url: str | sa.URL) -> None:
        """Open the index of the database at `url` (an async driver URL, as the store's engine)."""
        self._file = sqlite_file(url)
        self._sqlite: _SQLiteReader | None = None
        if self._file is not None:
            # The standard library's driver in the caller's thread: no SQLAlchemy to import and
            # no event loop to start, which is most of what a one-off `newsbot ask` costs.
            self._sqlite, self._dialect = _SQLiteReader(self._file), "sqlite"
        else:
            from sqlalchemy.ext.asyncio import create_async_engine

            self._loop = _Loop()
            self._engine = create_async_engine(url)
            self._dialect = self._engine.dialect.name
        self._analysed = _Analysed()
        self._df: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stats_at: tuple[float, int, float] | None = None

    def close(self) -> None:
        """Release the connections and the private loop."""
        if self._sqlite is not None:
            self._sqlite.close()
            return
        self._loop.run(self._engine.dispose())
        self._loop.close()

    def __enter__(self) -> StoreIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Mapping[str, Any] | None = None, **expand: bool) -> list[Any]:
        if self._sqlite is not None:
            return self._sqlite.rows(sql, params or {}, expand)
        import sqlalchemy as sa

        statement = sa.text(sql)
        if expand:
            statement = statement.bindparams(*(sa.bindparam(n, expanding=True) for n in expand))

        async def go() -> list[Any]:
            async with self._engine.connect() as conn:
                return list((await conn.execute(statement, dict(params or {}))).all())

        return self._loop.run(go())

    def __len__(self) -> int:
        return int(self._rows("SELECT count(*) FROM search_docs")[0][0])

    def add(self, article: Article, weight: float = 0.0) -> None:
        """Drop a changed article's cached analysis; the store has written its row already."""
        self._analysed.forget(article.id)
        with self._lock:
            self._stats_at = None

    def get(self, article_id: str) -> Article | None:
        """The stored article with this id."""
        found = self._articles([article_id])
        return found[0] if found else None

    def _articles(self, ids: Sequence[str]) -> list[Article]:
        if not ids:
            return []
        rows = self._rows(
            "SELECT id, title, text, lang, published, url, source FROM articles WHERE id IN :ids",
            {"ids": list(ids)},
            ids=True,
        )
        by_id = {
            r[0]: Article(
                id=r[0], title=r[1], text=r[2], lang=r[3], published=r[4], url=r[5], source=r[6]
            )
            for r in rows
        }
        return [by_id[i] for i in ids if i in by_id]

    def analysed(self, article: Article) -> tuple[Sentence, ...]:
        """The article's analysed sentences (a bounded cache)."""
        return self._analysed.get(article)

    def idf(self, key: str) -> float:
        """Inverse document frequency of a key (document frequencies cached per process)."""
        return self.idfs([key])[key]

    def idfs(self, keys: Iterable[str], n: int | None = None) -> dict[str, float]:
        """IDF of several keys with one query for the ones not seen before."""
        if n is None:
            n = self._stats()[0]
        wanted = {k: term(k) for k in keys}
        with self._lock:
            missing = sorted({t for t in wanted.values() if t and t not in self._df})
        if missing:
            found = dict.fromkeys(missing, 0)
            if self._dialect == "postgresql":
                # One GIN lookup per term: far cheaper than testing every term on every row.
                parts = " UNION ALL ".join(
                    f"SELECT {i}, count(*) FROM search_docs WHERE tsv @@ CAST(:t{i} AS tsquery)"
                    for i in range(len(missing))
                )
                params = {f"t{i}": t for i, t in enumerate(missing)}
                found.update({missing[int(r[0])]: int(r[1]) for r in self._rows(parts, params)})
            else:
                rows = self._rows(
                    "SELECT term, doc FROM search_vocab WHERE term IN :ts", {"ts": missing}, ts=True
                )
                found.update({r[0]: int(r[1]) for r in rows})
            with self._lock:
                if len(self._df) > 100_000:
                    self._df.clear()  # bounded memory; frequencies change slowly anyway
                self._df.update(found)
        with self._lock:
            return {k: _idf(n, self._df.get(t, 0)) if t else 0.0 for k, t in wanted.items()}

    def search(self, query: str, k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles for a query (a question or keywords), best first."""
        return self.search_groups(analyse(query, self).groups, k)

    def search_groups(self, groups: Iterable[Group], k: int = 5) -> list[tuple[Article, float]]:
        """The k best articles: full-text candidates, scored like `MemoryIndex` (BM25 per group)."""
        groups = [g for g in groups if any(term(key) for key in g.keys)]
        terms = sorted({term(key) for g in groups for key in g.keys} - {""})
        if not terms:
            return []
        n, avg = self._stats()
        idf = self.idfs([key for g in groups for key in g.keys], n)
        # Candidates come from the telling terms: a word in a tenth of all articles ranks
        # thousands of rows and adds little (it still counts when the candidates are scored).
        by_term = {term(k): v for k, v in idf.items()}
        with self._lock:
            present = {t for t in terms if self._df.get(t, 0) > 0}
        telling = [t for t in terms if t in present and by_term.get(t, 0.0) >= COMMON_IDF]
        if self._dialect == "postgresql":
            hits = self._pg_candidates(groups, set(telling or terms), by_term)
        else:
            hits = self._candidates(telling or terms)
        if not hits:
            return []
        # Scoring is the CPU part of a search: terms are looked up once per group, and the
        # sentence sets for re-ranking are built for the best RERANK_TOP hits only.
        group_terms = [
            ({term(key): idf[key] for key in g.keys}, 1.5 if g.entity else 1.0) for g in groups
        ]
        scored: list[tuple[float, str, str]] = []
        for article_id, keys, length, prior in hits:
            counts = Counter(keys.split())
            norm = BM25_K1 * (1 - BM25_B + BM25_B * length / avg)
            total = 0.0
            for weights, boost in group_terms:
                best = 0.0
                for t, w in weights.items():
                    tf = counts.get(t, 0)
                    if tf:
                        best = max(best, w * tf * (BM25_K1 + 1) / (tf + norm))
                total += best * boost
            total *= 1 + PRIOR_STRENGTH * (prior or 0.0)
            scored.append((total, article_id, keys))
        scored.sort(key=lambda s: -s[0])
        top = scored[: max(k, RERANK_TOP)]
        if len(groups) > 1:
            top = [
                (s * (0.5 + _coherence(_sentence_sets(keys), groups)), i, keys)
                for s, i, keys in top
            ]
            top.sort(key=lambda s: -s[0])
        top = [t for t in top if t[0] > 0][:k]
        articles = {a.id: a for a in self._articles([i for _, i, _ in top])}
        return [(articles[i], s) for s, i, _ in top if i in articles]

    def _stats(self) -> tuple[int, float]:
        """Article count and mean length, reused for STATS_SECONDS (they drift slowly)."""
        with self._lock:
            if self._stats_at and time.monotonic() - self._stats_at[0] < STATS_SECONDS:
                return self._stats_at[1], self._stats_at[2]
        row = self._rows("SELECT count(*), avg(length) FROM search_docs")[0]
        n, avg = int(row[0]), float(row[1] or 1.0)
        with self._lock:
            self._stats_at = (time.monotonic(), n, avg)
        return n, avg

    def _candidates(self, terms: Sequence[str]) -> list[tuple[str, str, int, float | None]]:
        """SQLite: FTS5's bm25 picks the candidates (its index holds the term statistics)."""
        sql = (
            "SELECT d.article_id, f.keys, d.length, v.score FROM ("
            " SELECT rowid, keys, rank FROM search_fts WHERE search_fts MATCH :q"
            " ORDER BY rank LIMIT :n) f"
            " JOIN search_docs d ON d.doc = f.rowid"
            " LEFT JOIN verdicts v ON v.article_id = d.article_id"
        )
        query = " OR ".join(f'"{t}"' for t in terms)
        rows = self._rows(sql, {"q": query, "n": CANDIDATES})
        return [(r[0], r[1], int(r[2]), None if r[3] is None else float(r[3])) for r in rows]

    def _pg_candidates(
        self, groups: Sequence[Group], telling: set[str], idf: Mapping[str, float]
    ) -> list[tuple[str, str, int, float | None]]:
        """PostgreSQL: the rows with the most IDF-weighted question groups, found in the index.

        `ts_rank` would read and decompress the tsvector of every matching row (thousands for a
        question with a few common words, 100-400 ms at 20,000 articles); one GIN lookup per
        group touches only row ids, and only the best CANDIDATES rows' keys are read.
        """
        parts: list[str] = []
        params: dict[str, Any] = {}
        for gi, g in enumerate(groups):
            keys = sorted({term(k) for k in g.keys} & telling)
            if not keys:
                continue
            weight = max(idf.get(k, 0.0) for k in keys) * (1.5 if g.entity else 1.0)
            parts.append(
                f"SELECT article_id, CAST(:w{gi} AS float8) AS w FROM search_docs"
                f" WHERE tsv @@ CAST(:q{gi} AS tsquery)"
            )
            params[f"q{gi}"], params[f"w{gi}"] = " | ".join(keys), weight
        if not parts:
            return []
        sql = (
            "SELECT d.article_id, d.keys, d.length, v.score FROM ("
            f" SELECT article_id, sum(w) AS s FROM ({' UNION ALL '.join(parts)}) m"
            "  GROUP BY article_id ORDER BY s DESC, article_id LIMIT :n) top"
            " JOIN search_docs d ON d.article_id = top.article_id"
            " LEFT JOIN verdicts v ON v.article_id = d.article_id"
            " ORDER BY top.s DESC"
        )
        rows = self._rows(sql, {**params, "n": CANDIDATES})
        return [(r[0], r[1], int(r[2]), None if r[3] is None else float(r[3])) for r in rows]
