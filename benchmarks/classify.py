"""Benchmark the conflict classifier against the dev labels of the shared corpus.

Prints precision / recall / F1 per language for: newsbot's lexicon scorer, a keyword filter
of the kind RSS bots offer, TF-IDF + logistic regression (5-fold CV, scikit-learn), and the
feedback-learning mode (lexicon + FeedbackModel trained on 4 folds of the dev labels as if
they were chat feedback). Then throughput in-process and in a fresh subprocess.

    .venv/bin/python benchmarks/classify.py [--corpus PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.classify import classify
from bot.learn import train
from bot.models import Article

_ROOT = Path(__file__).resolve().parents[1]
# ../shared next to the checkout; a worktree under wt/ finds it one level further up.
DEFAULT_CORPUS = next(
    (p / "shared/corpus" for p in (_ROOT.parent, _ROOT.parent.parent) if (p / "shared").is_dir()),
    _ROOT.parent / "shared/corpus",
)
CLI_TARGET = 2000.0
# Checklist 15: 10,000 articles through the classifier, in batches; memory must stay flat.
LOAD_ARTICLES = 10_000
LOAD_BATCHES = 5
MEMORY_GROWTH_MB = 20.0
LANGS = ("de", "en")
FOLDS = 5

# The kind of filter RSS/news bots offer: a short word list, any match flags the item.
KEYWORDS = re.compile(
    r"\b(?:war|wars|military|attack\w*|troops|soldiers|bomb\w*|terror\w*|killed|missile\w*|"
    r"krieg\w*|militär\w*|angriff\w*|anschlag\w*|anschläge\w*|soldat\w*|armee\w*|waffe\w*|"
    r"rakete\w*|truppen\w*)\b",
    re.IGNORECASE,
)

SUBPROCESS_SNIPPET = """
import json, sys
from bot.classify import classify
from bot.models import Article
n = 0
with open(sys.argv[1], encoding="utf-8") as fh:
    for line in fh:
        d = json.loads(line)
        classify(Article(id=d["id"], title=d["title"], text=d["text"], lang=d["lang"]))
        n += 1
print(n)
"""


def load(corpus: Path) -> tuple[dict[str, Article], dict[str, bool]]:
    articles: dict[str, Article] = {}
    with (corpus / "articles.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            articles[d["id"]] = Article(
                id=d["id"], title=d["title"], text=d["text"], lang=d["lang"]
            )
    labels: dict[str, bool] = {}
    with (corpus / "labels-dev.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["label"] != "borderline":
                labels[d["id"]] = d["label"] == "yes"
    return articles, labels


def prf(pred: dict[str, bool], gold: dict[str, bool], ids: Sequence[str]) -> tuple[float, ...]:
    tp = sum(1 for i in ids if pred[i] and gold[i])
    fp = sum(1 for i in ids if pred[i] and not gold[i])
    fn = sum(1 for i in ids if gold[i] and not pred[i])
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def folds(ids: Sequence[str], gold: dict[str, bool]) -> list[list[str]]:
    """Deterministic stratified folds: yes and no items dealt round-robin."""
    out: list[list[str]] = [[] for _ in range(FOLDS)]
    for label in (True, False):
        for k, i in enumerate(sorted(x for x in ids if gold[x] == label)):
            out[k % FOLDS].append(i)
    return out


def tfidf_cv(
    articles: dict[str, Article], gold: dict[str, bool], ids: list[str]
) -> dict[str, bool]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pred: dict[str, bool] = {}
    for test in folds(ids, gold):
        test_set = set(test)
        train_ids = [i for i in ids if i not in test_set]
        model = make_pipeline(
            TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1),
            LogisticRegression(max_iter=2000, class_weight="balanced"),
        )
        model.fit([text_of(articles[i]) for i in train_ids], [gold[i] for i in train_ids])
        for i, y in zip(test, model.predict([text_of(articles[i]) for i in test]), strict=True):
            pred[i] = bool(y)
    return pred


def feedback_cv(
    articles: dict[str, Article], gold: dict[str, bool], ids: list[str]
) -> dict[str, bool]:
    pred: dict[str, bool] = {}
    for test in folds(ids, gold):
        test_set = set(test)
        model = train((articles[i], gold[i]) for i in ids if i not in test_set)
        for i in test:
            pred[i] = classify(articles[i], model=model).conflict
    return pred


def text_of(a: Article) -> str:
    return f"{a.title} {a.text}"


def throughput(articles: dict[str, Article], corpus: Path) -> tuple[float, float, float]:
    """Articles/s in-process (per wall and per CPU second) and in a fresh subprocess."""
    items = list(articles.values())
    start, cpu = time.perf_counter(), time.process_time()
    for a in items:
        classify(a)
    in_process = len(items) / (time.perf_counter() - start)
    in_process_cpu = len(items) / (time.process_time() - cpu)
    root = Path(__file__).resolve().parents[1]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SNIPPET, str(corpus / "articles.jsonl")],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return in_process, in_process_cpu, len(items) / (time.perf_counter() - start)


def cli_throughput(corpus: Path, runs: int = 5) -> list[tuple[float, float]]:
    """(articles per wall second, per CPU second) of the real `newsbot classify --format jsonl`
    command, start-up included, sorted by wall rate; after one warm-up run (it checks the config
    through the full command line, which the fast path then relies on)."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bot", "classify", "--format", "jsonl"]
    command.append(str(corpus / "articles.jsonl"))
    subprocess.run(command, cwd=root, check=True, capture_output=True)
    rates = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=root, check=True, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        count = len(done.stdout.splitlines())
        rates.append((count / elapsed, count / cpu))
    return sorted(rates)


def _rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def load_test(articles: dict[str, Article]) -> list[tuple[float, float]]:
    """Articles/s and resident MB after each batch of 10,000 distinct articles (both languages)."""
    base = list(articles.values())
    batch_size = LOAD_ARTICLES // LOAD_BATCHES
    out = []
    for b in range(LOAD_BATCHES):
        batch = [
            # Distinct texts (a new number and word each), so caches meet new tokens every batch.
            Article(
                id=f"load-{b}-{i}",
                title=a.title,
                text=f"{a.text} ({b * batch_size + i} w{b}x{i})",
                lang=a.lang,
            )
            for i, a in enumerate(base[(b * batch_size + k) % len(base)] for k in range(batch_size))
        ]
        start = time.perf_counter()
        for a in batch:
            classify(a)
        out.append((len(batch) / (time.perf_counter() - start), _rss_mb()))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-sklearn", action="store_true", help="skip the TF-IDF reference")
    args = parser.parse_args(argv)
    corpus: Path = args.corpus
    if not (corpus / "articles.jsonl").is_file() or not (corpus / "labels-dev.jsonl").is_file():
        print(f"corpus not found at {corpus}, skipping")
        return 0
    articles, gold = load(corpus)

    newsbot = {i: classify(articles[i]).conflict for i in gold}
    keyword = {i: bool(KEYWORDS.search(text_of(articles[i]))) for i in gold}
    systems: list[tuple[str, Callable[[list[str]], dict[str, bool]]]] = [
        ("newsbot (lexicon)", lambda ids: newsbot),
        ("keyword filter", lambda ids: keyword),
    ]
    if not args.no_sklearn:
        systems.append(("TF-IDF + LR (5-fold CV)", lambda ids: tfidf_cv(articles, gold, ids)))
    systems.append(("newsbot + feedback (5-fold CV)", lambda ids: feedback_cv(articles, gold, ids)))

    print(f"dev labels, borderline left out: {len(gold)} articles\n")
    print(f"{'system':34} {'lang':4} {'n':>4} {'P':>6} {'R':>6} {'F1':>6}")
    for name, run in systems:
        for lang in LANGS:
            ids = sorted(i for i in gold if articles[i].lang == lang)
            pred = run(ids)
            p, r, f = prf(pred, gold, ids)
            print(f"{name:34} {lang:4} {len(ids):4} {p:6.3f} {r:6.3f} {f:6.3f}")
    print("\nnewsbot (lexicon) on the two halves of dev (even / odd article numbers):")
    for lang in LANGS:
        for half, parity in (("even", 0), ("odd", 1)):
            ids = sorted(
                i for i in gold if articles[i].lang == lang and int(i.split("-")[1]) % 2 == parity
            )
            p, r, f = prf(newsbot, gold, ids)
            print(f"  {lang} {half:4} n={len(ids):3}  P={p:.3f} R={r:.3f} F1={f:.3f}")

    in_process, in_process_cpu, with_startup = throughput(articles, corpus)
    print(f"\nthroughput, {len(articles)} articles (2 shared cores: figures are noisy):")
    print(f"  in-process (warm lexicon)      {in_process:8.0f} articles/s")
    print(f"  subprocess incl. start-up      {with_startup:8.0f} articles/s")
    rates = cli_throughput(corpus)
    median, median_cpu = rates[len(rates) // 2][0], sorted(c for _, c in rates)[len(rates) // 2]
    print(
        f"  `newsbot classify --format jsonl` incl. start-up: median {median:.0f} articles/s"
        f" (runs: {', '.join(f'{r:.0f}' for r, _ in rates)}); ratio to in-process "
        f"{median / in_process:.2f} (target >= {CLI_TARGET:.0f} articles/s)"
    )
    print(
        f"  per CPU second: command {median_cpu:.0f} articles/s, in-process {in_process_cpu:.0f}"
        f" articles/s, ratio {median_cpu / in_process_cpu:.2f} (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    missed: list[str] = []
    if median < CLI_TARGET:
        missed.append(f"newsbot classify incl. start-up: {median:.0f}/s (target {CLI_TARGET:.0f})")
    batches = load_test(articles)
    print(f"\nchecklist 15: {LOAD_ARTICLES} articles in {LOAD_BATCHES} batches")
    for number, (rate, rss) in enumerate(batches, start=1):
        print(f"  batch {number}: {rate:8.0f} articles/s  resident {rss:7.1f} MB")
    slowest = min(rate for rate, _ in batches)
    growth = batches[-1][1] - batches[0][1]
    print(
        f"  slowest batch / in-process baseline: {slowest / in_process:.2f}; memory growth "
        f"after batch 1: {growth:+.1f} MB"
    )
    if slowest < 0.8 * in_process:
        missed.append(
            f"10,000 articles throughput: {slowest:.0f}/s (target >= 0.8 x {in_process:.0f})"
        )
    if growth > MEMORY_GROWTH_MB:
        missed.append(
            f"memory flat across batches: +{growth:.1f} MB (target <= {MEMORY_GROWTH_MB})"
        )
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
