"""Units of work the service and the CLI run: ingest article files, classify what changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot import articles, qa
from bot.classify import classify
from bot.learn import FeedbackModel
from bot.models import Article, Thresholds, Verdict
from bot.store import IngestCounts, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestReport:
    """What one ingest did: counts, rejections, and the new or changed articles with verdicts."""

    counts: IngestCounts = field(default_factory=IngestCounts)
    rejected: list[articles.Rejection] = field(default_factory=list)
    changed: list[tuple[Article, Verdict]] = field(default_factory=list)

    @property
    def read(self) -> int:
        """How many articles were read, whatever happened to them."""
        return self.counts.new + self.counts.updated + self.counts.duplicate


def classify_all(
    batch: Sequence[Article], thresholds: Thresholds, model: FeedbackModel | None = None
) -> list[Verdict]:
    """Verdicts for a batch, in order."""
    return [classify(article, thresholds, model) for article in batch]


async def ingest(
    paths: Sequence[Path],
    store: Store,
    *,
    thresholds: Thresholds,
    max_bytes: int = 5_000_000,
    languages: Sequence[str] = ("de", "en"),
    model: FeedbackModel | None = None,
    index: qa.Index | None = None,
) -> IngestReport:
    """Read files, store new/changed articles, classify them, and add them to the QA index."""
    # File reading and classification are blocking CPU/disk work: keep the event loop free.
    results = await asyncio.to_thread(lambda: list(articles.read(paths, max_bytes, languages)))
    report = IngestReport()
    found: list[Article] = []
    for result in results:
        if isinstance(result, articles.Rejection):
            log.warning("rejected %s: %s", result.where, result.reason)
            report.rejected.append(result)
        else:
            found.append(result)
    report.counts, changed = await store.add_articles(found)
    if changed:
        verdicts = await asyncio.to_thread(classify_all, changed, thresholds, model)
        await store.save_verdicts(verdicts)
        report.changed = list(zip(changed, verdicts, strict=True))
        if index is not None:
            for article, verdict in report.changed:
                index.add(article, verdict.score)
    return report
