"""What the service counts for operators: Prometheus metrics in one registry per service."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.models import Article, Level, Verdict

# Alert latency (article seen → platform acknowledged) spans sub-second folder drops to
# quiet-hour holds of a night; buckets in seconds.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 43200.0)


@dataclass
class Metrics:
    """The counters, gauges and histograms newsbot exposes on /metrics."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.articles_ingested = Counter(
            "newsbot_articles_ingested",
            "Articles stored new or changed, by source kind and language.",
            ["source", "lang"],
            registry=r,
        )
        self.articles_flagged = Counter(
            "newsbot_articles_flagged",
            "Stored articles the classifier put into alerts or digests.",
            ["source", "lang", "level"],
            registry=r,
        )
        self.deliveries = Counter(
            "newsbot_deliveries",
            "Alerts, digests and notices by platform and outcome (sent, retry, failed).",
            ["platform", "kind", "outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "newsbot_rate_limited",
            "Sends the platform answered with 429 / retry-after.",
            ["platform"],
            registry=r,
        )
        self.alert_latency = Histogram(
            "newsbot_alert_latency_seconds",
            "From an article being seen to the platform acknowledging its alert.",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_lag = Gauge(
            "newsbot_delivery_lag_seconds",
            "Age of the oldest delivery that is due and not yet sent.",
            registry=r,
        )
        self.pending = Gauge(
            "newsbot_deliveries_pending", "Deliveries owed and not yet sent.", registry=r
        )
        self.source_errors = Counter(
            "newsbot_source_errors",
            "Failed fetches or reads of a source, by kind (feed, folder).",
            ["kind"],
            registry=r,
        )
        self.leader = Gauge(
            "newsbot_leader",
            "1 while this instance polls and schedules for the deployment, else 0.",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


def source_kind(source: str | None) -> str:
    """A bounded label for an article's source: a feed, the folder, or an import."""
    # Labels must not grow with the data (one series per URL or file would): keep a kind.
    if not source:
        return "import"
    if "://" in source:
        return "feed"
    return "folder"


# The process's metrics: what /metrics serves. Tests read differences, or build their own.
METRICS = Metrics()


def count_stored(classified: Iterable[tuple[Article, Verdict]], metrics: Metrics = METRICS) -> None:
    """Count newly stored (or changed) articles, and those the classifier flagged."""
    for article, verdict in classified:
        source, lang = source_kind(article.source), article.lang or "unknown"
        metrics.articles_ingested.labels(source, lang).inc()
        if verdict.level is not Level.IGNORE:
            metrics.articles_flagged.labels(source, lang, verdict.level.value).inc()
