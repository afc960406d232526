import dataclasses
from datetime import UTC, datetime

from bot.models import ChatRef
from bot.store import Store


async def test_a_feed_is_shared_by_its_owners_and_polled_until_the_last_gives_it_up(
    store: Store,
) -> None:
    sources = store.sources
    assert await sources.add("https://a.example/rss", name="A", added_by="telegram:1") is True
    # Another chat adding the same feed (written differently) becomes an owner of the same row.
    assert await sources.add("HTTPS://A.example:443/rss?#x", added_by="telegram:2") is True
    assert await sources.add("https://a.example/rss", added_by="telegram:2") is False
    [feed] = await sources.active()
    assert (feed.url, feed.name, feed.added_by) == ("https://a.example/rss", "A", "telegram:1")
    assert feed.owners == {"telegram:1", "telegram:2"} and not feed.public
    assert feed.audience() == frozenset({ChatRef("telegram", "1"), ChatRef("telegram", "2")})
    assert await sources.remove(feed.id, owner="telegram:3") is False  # owns nothing
    assert await sources.remove(feed.id, owner="telegram:1") is True
    [kept] = await sources.active()
    assert (kept.owners, kept.added_by) == (frozenset({"telegram:2"}), "telegram:2")
    assert await sources.remove("https://A.example/rss", owner="telegram:2") is True
    assert await sources.active() == []
    assert await sources.remove("https://a.example/rss") is False  # already inactive
    # A removed feed belongs to whoever adds it again; the config makes public what it lists.
    assert await sources.add("https://a.example/rss", added_by="telegram:2") is True
    assert (await sources.active())[0].owners == {"telegram:2"}
    assert await sources.add("https://a.example/rss", interval_seconds=60) is True
    assert await sources.add("https://a.example/rss", interval_seconds=60) is False
    [again] = await sources.active()
    assert (again.id, again.added_by, again.interval_seconds) == (feed.id, "config", 60)
    assert again.owners == {"config", "telegram:2"} and again.public and again.audience() is None
    # The config dropping it leaves it the chat's own feed again.
    assert await sources.remove(feed.id, owner="config") is True
    [chats] = await sources.active()
    assert (chats.added_by, chats.public) == ("telegram:2", False)
    assert await sources.remove(feed.id) is True  # every share at once
    assert await sources.active() == [] and (await sources.get(feed.id)).owners == frozenset()  # type: ignore[union-attr]


async def test_fetch_state_round_trips(store: Store) -> None:
    sources = store.sources
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
