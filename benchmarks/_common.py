"""Helpers shared by the benchmarks: where ../shared is, skipping, and reporting missed targets."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import string
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.models import Article
    from bot.store import Store

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The read-only shared folder: $NEWSBOT_SHARED, else ../shared beside the checkout."""
    return Path(os.environ.get("NEWSBOT_SHARED") or ROOT.parent / "shared")


def skip_unless(path: Path, what: str) -> None:
    """Exit 0 with one line when `path` is absent (the benchmark convention)."""
    if not path.exists():
        print(f"SKIPPED: {what} not found at {path} (set NEWSBOT_SHARED)")
        raise SystemExit(0)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Targets:
    """Collects target checks; `exit_code()` prints one MISSED line per miss."""

    missed: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, measured: str, target: str) -> bool:
        """Record one target; print nothing when met."""
        if not ok:
            self.missed.append(f"MISSED: {name}: {measured} (target {target})")
        return ok

    def exit_code(self) -> int:
        """Print the misses and return 1 if there were any, else 0."""
        for line in self.missed:
            print(line)
        sys.stdout.flush()
        return 1 if self.missed else 0


def feed_document(records: list[dict[str, Any]], count: int, name: str = "bench") -> bytes:
    """An RSS document of `count` distinct corpus items (ids, titles and texts numbered)."""
    items = []
    for i in range(count):
        record = records[i % len(records)]
        title = (record["title"] or record["text"][:80]).replace("&", "&amp;").replace("<", "&lt;")
        text = record["text"][:600].replace("&", "&amp;").replace("<", "&lt;")
        items.append(
            f"<item><guid>{name}-{i}</guid><title>{title} ({i})</title>"
            f"<description>{text} [{i}]</description><link>https://{name}.example/{i}</link></item>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{name}</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


_PUNCT = set(string.punctuation)


def squad_norm(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def f1(pred: str, gold: str) -> float:
    """SQuAD token F1."""
    p, g = squad_norm(pred).split(), squad_norm(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


async def classify_and_route(
    store: Store, changed: Sequence[Article], now: datetime, done: Callable[[str], None]
) -> None:
    """Classify stored articles and route them, as the service does; `done` after each phase."""
    from bot import jobs
    from bot.models import Thresholds

    verdicts = await asyncio.to_thread(jobs.classify_all, changed, Thresholds())
    await store.catalog.save_verdicts(verdicts)
    done("classify")
    await jobs.route(
        list(zip(changed, verdicts, strict=True)),
        store.sources,
        store.catalog,
        store.subscriptions,
        store.ledger,
        None,
        alert_threshold=0.8,
        now=now,
    )
    done("cluster+route")
