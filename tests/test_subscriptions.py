from datetime import UTC, datetime

from bot.models import ChatRef
from bot.store import Store


async def test_subscriptions(any_store: Store) -> None:
    chat = ChatRef("telegram", "42")
    topic = ChatRef("telegram", "42", "7")
    assert await any_store.subscriptions.subscribe(chat, "de") is True
    assert await any_store.subscriptions.subscribe(chat, "de") is False
    assert await any_store.subscriptions.subscribe(topic, "en") is True
    assert [s.chat for s in await any_store.subscriptions.active()] == [chat, topic]
    assert await any_store.subscriptions.unsubscribe(chat) is True
    assert await any_store.subscriptions.unsubscribe(chat) is False
    sub = await any_store.subscriptions.subscription(chat)
    assert sub is not None and not sub.active and sub.lang == "de"
    assert await any_store.subscriptions.subscribe(chat, "de") is True
    when = datetime(2026, 1, 1, 8, tzinfo=UTC)
    await any_store.subscriptions.mark_digest(sub.id, when)
    again = await any_store.subscriptions.subscription(chat)
    assert again is not None and again.last_digest_at == when
