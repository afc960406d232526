from bot.metrics import Metrics, source_kind


def test_exposition_names_each_series_with_its_labels() -> None:
    metrics = Metrics()
    metrics.articles_ingested.labels("feed", "de").inc(3)
    metrics.deliveries.labels("telegram", "alert", "sent").inc()
    metrics.alert_latency.labels("telegram").observe(0.4)
    text = metrics.exposition().decode()
    assert 'newsbot_articles_ingested_total{lang="de",source="feed"} 3.0' in text
    assert 'newsbot_deliveries_total{kind="alert",outcome="sent",platform="telegram"} 1.0' in text
    # 0.4 s falls into the 0.5 s bucket and every larger one, not into 0.25 s.
    assert 'newsbot_alert_latency_seconds_bucket{le="0.25",platform="telegram"} 0.0' in text
    assert 'newsbot_alert_latency_seconds_bucket{le="0.5",platform="telegram"} 1.0' in text


def test_two_services_in_one_process_count_separately() -> None:
    first, second = Metrics(), Metrics()
    first.rate_limited.labels("slack").inc()
    assert 'newsbot_rate_limited_total{platform="slack"} 1.0' in first.exposition().decode()
    assert 'newsbot_rate_limited_total{platform="slack"}' not in second.exposition().decode()


def test_source_labels_stay_bounded() -> None:
    assert source_kind("https://example.org/feed.xml?apikey=secret") == "feed"
    assert source_kind("articles/2026/report.txt") == "folder"
    assert source_kind(None) == "import"
