"""Feed parsing: feedparser-rs against feedparser on one document, then 10,000 entries end to end.

    .venv/bin/python benchmarks/feeds.py [--entries 10000] [--repeat 3]

Prints entries/s of both parsers on the same RSS document built from the research corpus (raw
parser calls, and our whole `feeds.parse` per parser), their ratio (target: feedparser-rs at
least 10x feedparser; issue 14 measured 24.7x on an idle machine), and the 10,000-entry pipeline
(parse, store, classify, cluster, route on SQLite; target < 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import feedparser  # type: ignore[import-untyped]  # noqa: E402
import feedparser_rs  # noqa: E402

from benchmarks._common import (  # noqa: E402
    Targets,
    feed_document,
    peak_rss_mb,
    shared_dir,
    skip_unless,
)
from benchmarks.pipeline import ten_thousand  # noqa: E402
from bot import feeds  # noqa: E402

RATIO_TARGET = 10.0
PIPELINE_TARGET = 5.0


def best_of(repeat: int, work: Callable[[], Any]) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=shared_dir() / "corpus")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    skip_unless(args.corpus / "articles.jsonl", "research corpus")
    targets = Targets()
    warnings.simplefilter("ignore")  # feedparser's deprecation chatter is not the benchmark

    records = [json.loads(line) for line in (args.corpus / "articles.jsonl").open()]
    document = feed_document(records, args.entries)
    now = datetime.now(UTC)
    url = "https://bench.example/feed"
    count = len(feedparser_rs.parse(document).entries)
    rows = [
        (
            "feedparser (raw)",
            best_of(args.repeat, lambda: feedparser.parse(io.BytesIO(document))),
        ),
        (
            "feedparser-rs (raw)",
            best_of(args.repeat, lambda: feeds._parse_fast(document)),
        ),
        (
            "feeds.parse via feedparser",
            best_of(
                args.repeat, lambda: feeds.parse(document, url=url, now=now, parser="feedparser")
            ),
        ),
        (
            "feeds.parse via feedparser-rs",
            best_of(args.repeat, lambda: feeds.parse(document, url=url, now=now, parser="fast")),
        ),
        (
            "feeds.parse (auto, shipped)",
            best_of(args.repeat, lambda: feeds.parse(document, url=url, now=now)),
        ),
    ]
    print(f"document: {len(document) / 1e6:.1f} MB RSS, {count} entries (best of {args.repeat})")
    print(f"{'parser':32} {'seconds':>8} {'entries/s':>11}")
    for name, seconds in rows:
        print(f"{name:32} {seconds:8.3f} {count / seconds:11,.0f}")
    raw_ratio = rows[0][1] / rows[1][1]
    whole_ratio = rows[2][1] / rows[3][1]
    print(f"ratio feedparser-rs / feedparser: raw {raw_ratio:.1f}x, feeds.parse {whole_ratio:.1f}x")
    targets.check(
        "feedparser-rs speed-up (raw)",
        raw_ratio >= RATIO_TARGET,
        f"{raw_ratio:.1f}x",
        f">= {RATIO_TARGET:g}x",
    )

    total, phases, cpu = asyncio.run(ten_thousand(args.corpus, args.entries))
    detail = ", ".join(f"{k} {v:.2f} s" for k, v in phases.items() if k != "entries")
    print(
        f"pipeline: {int(phases['entries'])} entries parsed, stored, classified, routed: "
        f"{total:.2f} s (target < {PIPELINE_TARGET:g} s)"
    )
    print(f"  {detail}")
    print(f"  CPU: {', '.join(f'{k} {v:.2f} s' for k, v in cpu.items())}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    targets.check(
        f"{args.entries}-entry pipeline",
        total < PIPELINE_TARGET,
        f"{total:.2f} s",
        f"< {PIPELINE_TARGET:g} s",
    )
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
