import dataclasses
from datetime import UTC, datetime

from bot.store import Store


async def test_a_chat_added_feed_is_owned_until_removed_and_the_config_claims_what_it_lists(
    any_store: Store,
) -> None:
    sources = any_store.sources
    assert await sources.add("https://a.example/rss", name="A", added_by="telegram:1") is True
    assert await sources.add("https://a.example/rss", added_by="telegram:2") is False
    [feed] = await sources.active()
    assert (feed.name, feed.added_by) == ("A", "telegram:1")  # still the first adder's
    assert await sources.remove(feed.id) is True
    assert await sources.remove("https://a.example/rss") is False  # already inactive
    assert await sources.active() == []
    # A removed feed belongs to whoever adds it again; the config takes over what it lists.
    assert await sources.add("https://a.example/rss", added_by="telegram:2") is True
    assert (await sources.active())[0].added_by == "telegram:2"
    assert await sources.add("https://a.example/rss", interval_seconds=60) is False
    [again] = await sources.active()
    assert (again.id, again.added_by, again.interval_seconds) == (feed.id, "config", 60)


async def test_fetch_state_round_trips(any_store: Store) -> None:
    sources = any_store.sources
    await sources.add("https://b.example/feed")
    [feed] = await sources.active()
    later = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    state = dataclasses.replace(
        feed.state,
        etag='"v2"',
        last_modified="Sun, 01 Mar 2026 12:00:00 GMT",
        failures=2,
        last_error="HTTP 503",
        next_attempt=later,
        last_fetched=later,
    )
    saved = dataclasses.replace(feed, state=state)
    await sources.save_state(saved)
    assert await sources.get(feed.id) == saved
    assert await sources.get(feed.id + 1000) is None
