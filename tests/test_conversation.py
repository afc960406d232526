from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import jobs, qa
from bot.config import Settings
from bot.conversation import Change, Conversation, RateLimit
from bot.models import Action, ActionKind, Answer, ChatRef, Digest, Inbound, Notice, Thresholds
from bot.store import Store

from .conftest import SEED

CHAT = ChatRef("test", "c1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def conversation(store: Store, settings: Settings) -> Conversation:
    index = qa.Index.build([])
    await jobs.ingest([SEED], store, thresholds=Thresholds(), index=index)
    return Conversation(store, index, settings, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))


def msg(text: str, **kwargs: object) -> Inbound:
    return Inbound(CHAT, text, user="u1", **kwargs)  # type: ignore[arg-type]


async def test_help_in_english_and_german(conversation: Conversation) -> None:
    [english] = await conversation.handle(msg("/help"))
    assert isinstance(english, Notice) and "/subscribe" in english.text
    [german] = await conversation.handle(msg("/help", lang="de"))
    assert isinstance(german, Notice) and "abbestellen" in german.text


async def test_subscribe_cycle(conversation: Conversation, store: Store) -> None:
    [reply] = await conversation.handle(msg("/subscribe"))
    assert isinstance(reply, Notice) and reply.text.startswith("Subscribed")
    [reply] = await conversation.handle(msg("/subscribe@newsbot"))
    assert isinstance(reply, Notice) and "already" in reply.text
    assert [s.chat for s in await store.subscriptions()] == [CHAT]
    [reply] = await conversation.handle(msg("/unsubscribe"))
    assert isinstance(reply, Notice) and reply.text.startswith("Unsubscribed")
    assert await store.subscriptions() == []


async def test_start_welcomes_and_subscribes(conversation: Conversation, store: Store) -> None:
    replies = await conversation.handle(msg("/start", lang="de"))
    assert len(replies) == 2 and all(isinstance(r, Notice) for r in replies)
    sub = await store.subscription(CHAT)
    assert sub is not None and sub.active and sub.lang == "de"


async def test_non_admin_may_ask_but_not_subscribe(
    conversation: Conversation, store: Store
) -> None:
    [reply] = await conversation.handle(msg("/subscribe", is_admin=False))
    assert isinstance(reply, Notice) and "administrators" in reply.text
    assert await store.subscriptions() == []
    [answer] = await conversation.handle(msg("who attends from Germany?", is_admin=False))
    assert isinstance(answer, Answer)


async def test_unknown_command_and_empty_ask(conversation: Conversation) -> None:
    [reply] = await conversation.handle(msg("/frobnicate"))
    assert isinstance(reply, Notice) and "Unknown command /frobnicate" in reply.text
    [reply] = await conversation.handle(msg("/ask"))
    assert isinstance(reply, Notice) and "/ask" in reply.text
    assert await conversation.handle(msg("   ")) == []


async def test_question_is_answered_with_source(conversation: Conversation) -> None:
    [answer] = await conversation.handle(msg("who attends from Germany?"))
    assert isinstance(answer, Answer)
    assert answer.text is not None and "Michaelis" in answer.text
    assert answer.sources and "Nato" in answer.sources[0].title
    [answer] = await conversation.handle(msg("/ask Wer nimmt für Deutschland teil?"))
    assert isinstance(answer, Answer) and answer.text is not None and "Michaelis" in answer.text


async def test_reply_to_an_article_scopes_the_question(conversation: Conversation) -> None:
    [seed] = conversation.index.search("Nato Russland Brüssel", k=1)
    [answer] = await conversation.handle(
        msg("who attends from Germany?", reply_to_article=seed[0].id)
    )
    assert isinstance(answer, Answer) and answer.sources[0].id == seed[0].id


async def test_digest_command(conversation: Conversation) -> None:
    [digest] = await conversation.handle(msg("/digest"))
    assert isinstance(digest, Digest)
    assert [item.title[:20] for item in digest.items] == ["Vertreter der 30 Nat"]


async def test_questions_are_rate_limited_per_user(store: Store, settings: Settings) -> None:
    clock = Clock()
    limited = Settings.model_validate(
        {**settings.model_dump(), "chat": {"questions_per_minute": 2}}
    )
    conversation = Conversation(store, qa.Index.build([]), limited, rate_clock=clock)
    for _ in range(2):
        [reply] = await conversation.handle(msg("who?"))
        assert isinstance(reply, Answer)
    [reply] = await conversation.handle(msg("who?"))
    assert isinstance(reply, Notice) and "please wait 60 s" in reply.text
    [other] = await conversation.handle(Inbound(CHAT, "who?", user="u2"))
    assert isinstance(other, Answer)
    clock.now += 60
    [reply] = await conversation.handle(msg("who?"))
    assert isinstance(reply, Answer)


def test_rate_limit_window() -> None:
    clock = Clock()
    limit = RateLimit(1, 10.0, clock)
    assert limit.wait_time("k") == 0
    assert limit.wait_time("k") == pytest.approx(10.0)
    clock.now += 4
    assert limit.wait_time("k") == pytest.approx(6.0)
    clock.now += 6
    assert limit.wait_time("k") == 0


def test_seed_path_exists() -> None:
    assert Path(SEED).exists()


async def test_settings_change_and_show(conversation: Conversation, store: Store) -> None:
    changes: list[str] = []

    async def changed(what: Change) -> None:
        assert what.chat == CHAT and what.source_id is None
        changes.append("sync")

    conversation.on_change = changed
    [reply] = await conversation.handle(msg("/settings digest 07:30 Europe/Berlin"))
    assert isinstance(reply, Notice) and "Subscribe first" in reply.text
    await conversation.handle(msg("/subscribe"))
    [reply] = await conversation.handle(msg("/settings digest 07:30 Europe/Berlin"))
    assert isinstance(reply, Notice) and "daily at 07:30 (Europe/Berlin)" in reply.text
    await conversation.handle(msg("/settings quiet 22:00-07:00"))
    await conversation.handle(msg("/settings threshold 0,9"))
    await conversation.handle(msg("/settings countries Ukraine, Syria"))
    [reply] = await conversation.handle(msg("/settings lang de"))
    assert isinstance(reply, Notice) and reply.text.startswith("Gespeichert")
    sub = await store.subscription(CHAT)
    assert sub is not None and sub.lang == "de"
    assert (sub.prefs.digest_at, sub.prefs.timezone) == ("07:30", "Europe/Berlin")
    assert (sub.prefs.quiet_start, sub.prefs.quiet_end) == ("22:00", "07:00")
    assert sub.prefs.alert_threshold == 0.9 and sub.prefs.countries == ("Ukraine", "Syria")
    assert len(changes) >= 5
    [bad] = await conversation.handle(msg("/settings digest 25:00"))
    assert isinstance(bad, Notice) and "25:00" in bad.text
    [bad] = await conversation.handle(msg("/settings timezone Mars/Base"))
    assert isinstance(bad, Notice) and "Mars/Base" in bad.text
    [denied] = await conversation.handle(msg("/settings alerts off", is_admin=False))
    assert isinstance(denied, Notice) and "Administratoren" in denied.text
    [shown] = await conversation.handle(msg("/settings", is_admin=False))
    assert isinstance(shown, Notice) and "Europe/Berlin" in shown.text


async def test_sources_add_list_remove_with_checks_and_quota(
    store: Store, settings: Settings
) -> None:
    async def check(url: str) -> None:
        if "127.0.0.1" in url:
            raise ValueError("127.0.0.1 is a loopback address")

    limited = Settings.model_validate({**settings.model_dump(), "sources": {"max_per_chat": 1}})
    conversation = Conversation(store, qa.Index.build([]), limited, check_url=check)
    [reply] = await conversation.handle(msg("/sources add http://127.0.0.1/feed"))
    assert isinstance(reply, Notice) and "loopback" in reply.text
    [reply] = await conversation.handle(msg("/sources add https://news.example/rss Wire"))
    assert isinstance(reply, Notice) and "Added feed" in reply.text
    [reply] = await conversation.handle(msg("/sources add https://other.example/rss"))
    assert isinstance(reply, Notice) and "most allowed" in reply.text
    [denied] = await conversation.handle(msg("/sources add https://x.example/", is_admin=False))
    assert isinstance(denied, Notice) and "administrators" in denied.text
    [listing] = await conversation.handle(msg("/sources"))
    assert isinstance(listing, Notice) and "Wire — https://news.example/rss" in listing.text
    [feed] = await store.sources()
    [removed] = await conversation.handle(msg(f"/sources remove {feed.id}"))
    assert isinstance(removed, Notice) and "Removed" in removed.text
    assert await store.sources() == []


async def test_why_and_feedback(conversation: Conversation, store: Store) -> None:
    [article] = await store.all_articles()
    [why] = await conversation.handle(msg("", action=Action(ActionKind.WHY, article.id)))
    assert isinstance(why, Notice) and "Truppenaufmarsch" in why.text
    [thanks] = await conversation.handle(msg("", action=Action(ActionKind.UP, article.id)))
    assert isinstance(thanks, Notice) and "Thanks" in thanks.text
    assert [(a.id, relevant) for a, relevant in await store.feedback_examples()] == [
        (article.id, True)
    ]
    [unknown] = await conversation.handle(msg("", action=Action(ActionKind.WHY, "nope")))
    assert isinstance(unknown, Notice) and "No such article" in unknown.text
