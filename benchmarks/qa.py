"""Score bot.qa on the dev questions and the practice questions, with and without the article.

Usage: .venv/bin/python benchmarks/qa.py [--corpus DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.classify import classify
from bot.models import Answer, Article
from bot.qa import Index, answer

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared/corpus"
PRACTICE = Path(__file__).resolve().parent / "qa-practice.jsonl"
MAX_CHARS = 300
TOP_SOURCES = 3


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower().replace("ß", "ss"))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def correct(item: dict, result: Answer) -> bool:
    answers, all_of = item.get("answers") or [], item.get("all_of") or []
    if not answers and not all_of:
        return result.text is None
    if result.text is None or len(result.text) > MAX_CHARS:
        return False
    got = fold(result.text)
    if answers and any(fold(a) in got for a in answers):
        return True
    return bool(all_of) and all(any(fold(a) in got for a in group) for group in all_of)


def load_articles(corpus: Path) -> list[Article]:
    articles = []
    with (corpus / "articles.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line)
            articles.append(
                Article(
                    id=raw["id"],
                    title=raw.get("title") or "",
                    text=raw["text"],
                    lang=raw["lang"],
                    source=raw.get("source"),
                )
            )
    return articles


def load_questions(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score(name: str, items: list[dict], index: Index, verbose: bool) -> dict[str, float]:
    ok_given = ok_store = n_store = 0
    latencies: list[float] = []
    for item in items:
        got = answer(item["question"], index, article_id=item["article"])
        good = correct(item, got)
        ok_given += good
        line = (
            f"  [{'ok' if good else 'XX'}] given {item['id']}: {item['question']} -> {got.text!r}"
        )
        store_line = ""
        if item.get("store", True):
            n_store += 1
            start = time.perf_counter()
            got_s = answer(item["question"], index)
            latencies.append(time.perf_counter() - start)
            top = [s.id for s in got_s.sources[:TOP_SOURCES]]
            good_s = correct(item, got_s) and (
                item["article"] in top or not (item.get("answers") or item.get("all_of"))
            )
            ok_store += good_s
            store_line = (
                f"  [{'ok' if good_s else 'XX'}] store {item['id']}: -> {got_s.text!r} from {top}"
            )
        else:
            start = time.perf_counter()
            answer(item["question"], index)
            latencies.append(time.perf_counter() - start)
        if verbose:
            print(line)
            if store_line:
                print(store_line)
    given = ok_given / len(items) if items else 0.0
    store = ok_store / n_store if n_store else 0.0
    print(
        f"{name}: with article {ok_given}/{len(items)} = {given:.0%}; "
        f"whole store {ok_store}/{n_store} = {store:.0%}"
    )
    return {"given": given, "store": store, "latencies": latencies}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    if not (args.corpus / "articles.jsonl").exists():
        print(f"corpus not found at {args.corpus}, skipping")
        return 0
    articles = load_articles(args.corpus)
    start = time.perf_counter()
    # The conflict score is the retrieval prior, as `newsbot ask` passes the stored scores.
    index = Index.build(articles, weights={a.id: classify(a).score for a in articles})
    build = time.perf_counter() - start
    print(f"index: {len(articles)} articles built in {build:.2f} s")
    latencies: list[float] = []
    sets = [("dev", args.corpus / "qa-dev.jsonl"), ("practice", PRACTICE)]
    for name, path in sets:
        if not path.exists():
            print(f"{name}: {path} not found, skipping")
            continue
        result = score(name, load_questions(path), index, args.verbose)
        latencies += result["latencies"]  # type: ignore[arg-type]
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        print(
            f"latency over {len(ms)} store-wide questions: p50 {statistics.median(ms):.0f} ms, "
            f"p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
