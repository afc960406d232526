from datetime import UTC, datetime

from bot.models import ChatRef
from bot.store import Store


async def test_subscriptions(store: Store) -> None:
    chat = ChatRef("telegram", "42")
    topic = ChatRef("telegram", "42", "7")
    assert await store.subscriptions.subscribe(chat, "de") is True
    assert await store.subscriptions.subscribe(chat, "de") is False
    assert await store.subscriptions.subscribe(topic, "en") is True
    assert [s.chat for s in await store.subscriptions.active()] == [chat, topic]
    assert await store.subscriptions.unsubscribe(chat) is True
    assert await store.subscriptions.unsubscribe(chat) is False
    sub = await store.subscriptions.subscription(chat)
    assert sub is not None and not sub.active and sub.lang == "de"
    assert await store.subscriptions.subscribe(chat, "de") is True
    when = datetime(2026, 1, 1, 8, tzinfo=UTC)
    await store.subscriptions.mark_digest(sub.id, when)
    again = await store.subscriptions.subscription(chat)
    assert again is not None and again.last_digest_at == when
