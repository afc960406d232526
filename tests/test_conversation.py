import dataclasses
from datetime import UTC, datetime

import pytest

from bot import articles, jobs, qa
from bot.chat.render import plain
from bot.config import Settings
from bot.conversation import Change, Conversation, RateLimit
from bot.models import (
    Action,
    ActionKind,
    Answer,
    Article,
    ChatRef,
    Digest,
    Inbound,
    Notice,
    Preferences,
    Thresholds,
)
from bot.store import Store

from .conftest import SEED
from .repos import repositories

CHAT = ChatRef("test", "c1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def conversation(store: Store, settings: Settings) -> Conversation:
    index = qa.Index.build([])
    await jobs.ingest([SEED], store.catalog, thresholds=Thresholds(), index=index)
    return Conversation(
        *repositories(store), index, settings, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)
    )


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
    assert [s.chat for s in await store.subscriptions.active()] == [CHAT]
    [reply] = await conversation.handle(msg("/unsubscribe"))
    assert isinstance(reply, Notice) and reply.text.startswith("Unsubscribed")
    assert await store.subscriptions.active() == []


async def test_start_welcomes_and_subscribes(conversation: Conversation, store: Store) -> None:
    replies = await conversation.handle(msg("/start", lang="de"))
    assert len(replies) == 2 and all(isinstance(r, Notice) for r in replies)
    sub = await store.subscriptions.subscription(CHAT)
    assert sub is not None and sub.active and sub.lang == "de"


async def test_non_admin_may_ask_but_not_subscribe(
    conversation: Conversation, store: Store
) -> None:
    [reply] = await conversation.handle(msg("/subscribe", is_admin=False))
    assert isinstance(reply, Notice) and "administrators" in reply.text
    assert await store.subscriptions.active() == []
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
    [seed] = await conversation.catalog.all_articles()
    [answer] = await conversation.handle(msg("who attends from Germany?", reply_to_article=seed.id))
    assert isinstance(answer, Answer) and answer.sources[0].id == seed.id


async def test_digest_command(conversation: Conversation) -> None:
    [digest] = await conversation.handle(msg("/digest"))
    assert isinstance(digest, Digest)
    assert [item.title[:20] for item in digest.items] == ["Vertreter der 30 Nat"]


async def test_questions_are_rate_limited_per_user(store: Store, settings: Settings) -> None:
    clock = Clock()
    limited = Settings.model_validate(
        {**settings.model_dump(), "chat": {"questions_per_minute": 2}}
    )
    conversation = Conversation(*repositories(store), qa.Index.build([]), limited, rate_clock=clock)
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
    # The console is the operator at the machine: piped questions are never throttled.
    local = Inbound(ChatRef("console", "local"), "who?", user="me")
    for _ in range(5):
        [reply] = await conversation.handle(local)
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
    sub = await store.subscriptions.subscription(CHAT)
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
    conversation = Conversation(*repositories(store), qa.Index.build([]), limited, check_url=check)
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
    [feed] = await store.sources.active()
    [removed] = await conversation.handle(msg(f"/sources remove {feed.id}"))
    assert isinstance(removed, Notice) and "Removed" in removed.text
    assert await store.sources.active() == []


async def test_why_and_feedback(conversation: Conversation, store: Store) -> None:
    [article] = await store.catalog.all_articles()
    [why] = await conversation.handle(msg("", action=Action(ActionKind.WHY, article.id)))
    assert isinstance(why, Notice) and "Truppenaufmarsch" in why.text
    [thanks] = await conversation.handle(msg("", action=Action(ActionKind.UP, article.id)))
    assert isinstance(thanks, Notice) and "Thanks" in thanks.text
    assert [(a.id, relevant) for a, relevant in await store.catalog.feedback_examples()] == [
        (article.id, True)
    ]
    [unknown] = await conversation.handle(msg("", action=Action(ActionKind.WHY, "nope")))
    assert isinstance(unknown, Notice) and "No such article" in unknown.text


# --- issue 11: sources scoped to their chat, command rate limit, incremental changes ---------


def chat_msg(chat: ChatRef, text: str, user: str = "u1", **kwargs: object) -> Inbound:
    return Inbound(chat, text, user=user, **kwargs)  # type: ignore[arg-type]


@pytest.mark.reliability
async def test_sources_are_scoped_to_the_chat_that_added_them(
    store: Store, settings: Settings
) -> None:
    """Issue 11 item 15: no chat sees or removes another's feeds, nor the config's secrets."""
    config_feed = "https://wire.example/rss?apikey=TOPSECRET"
    await store.sources.add(config_feed, name="wire")  # from the config file
    [wire] = await store.sources.active()
    await store.sources.save_state(
        dataclasses.replace(
            wire, state=dataclasses.replace(wire.state, last_error="401 for ?apikey=TOPSECRET")
        )
    )
    alice, bob = ChatRef("telegram", "1"), ChatRef("slack", "C2")
    conversation = Conversation(*repositories(store), qa.Index.build([]), settings)
    [added] = await conversation.handle(
        chat_msg(alice, "/sources add https://user:pw@news.example/feed?token=abc#top Mine")
    )
    assert isinstance(added, Notice) and "https://news.example/feed" in added.text
    assert "token" not in added.text and "pw" not in added.text
    mine = next(f for f in await store.sources.active() if f.added_by == "telegram:1")
    [listing] = await conversation.handle(chat_msg(alice, "/sources"))
    assert isinstance(listing, Notice)
    assert f"{mine.id}. Mine — https://news.example/feed?…" in listing.text
    assert "wire" not in listing.text and "token=abc" not in listing.text
    [other] = await conversation.handle(chat_msg(bob, "/sources", command_prefix="/newsbot "))
    assert isinstance(other, Notice) and "has not added any feeds" in other.text
    assert "/newsbot sources add" in other.text
    for victim in (str(mine.id), str(wire.id), config_feed):
        [refused] = await conversation.handle(chat_msg(bob, f"/sources remove {victim}"))
        assert isinstance(refused, Notice) and "added no feed" in refused.text
        assert "TOPSECRET" not in refused.text
    [own_remove] = await conversation.handle(chat_msg(alice, f"/sources remove {wire.id}"))
    assert isinstance(own_remove, Notice) and "added no feed" in own_remove.text
    assert {f.id for f in await store.sources.active()} == {wire.id, mine.id}
    everything = " ".join(
        p.text for p in [added, listing, other, refused, own_remove] if isinstance(p, Notice)
    )
    assert "TOPSECRET" not in everything and "401" not in everything
    [removed] = await conversation.handle(chat_msg(alice, f"/sources remove {mine.id}"))
    assert isinstance(removed, Notice) and "Removed" in removed.text
    assert [f.id for f in await store.sources.active()] == [wire.id]


@pytest.mark.reliability
async def test_a_thousand_feeds_meet_the_quota_and_the_command_rate_limit(
    store: Store, settings: Settings
) -> None:
    """Checklist 25: one user adds 1,000 feeds in seconds → quota and rate limit both hold."""
    clock = Clock()
    checked: list[str] = []

    async def check(url: str) -> None:
        checked.append(url)

    limited = Settings.model_validate(
        {
            **settings.model_dump(),
            "sources": {"max_per_chat": 5},
            "chat": {"commands_per_minute": 20, "chat_commands_per_minute": 60},
        }
    )
    conversation = Conversation(
        *repositories(store), qa.Index.build([]), limited, rate_clock=clock, check_url=check
    )
    replies = []
    for n in range(1000):
        [reply] = await conversation.handle(msg(f"/sources add https://f{n}.example/rss"))
        assert isinstance(reply, Notice)
        replies.append(reply.text)
    assert len(await store.sources.active()) == 5
    assert sum("Added feed" in r for r in replies) == 5
    assert sum("most allowed" in r for r in replies) == 15
    assert sum("please wait" in r for r in replies) == 980
    assert len(checked) == 5  # refused commands never reach the URL check (DNS)
    # Another user in the same chat still gets through, until the chat's own limit.
    others = [await conversation.handle(Inbound(CHAT, "/help", user=f"u{n}")) for n in range(2, 60)]
    texts = [r[0].text for r in others if isinstance(r[0], Notice)]
    assert sum("please wait" in t for t in texts) == 18  # 60 per chat a minute, 20 used
    clock.now += 60
    [later] = await conversation.handle(msg("/sources"))
    assert isinstance(later, Notice) and "f0.example" in later.text


async def test_overlong_questions_are_refused_politely(conversation: Conversation) -> None:
    [reply] = await conversation.handle(msg("who " * 200))
    assert isinstance(reply, Notice) and "too long (799 characters)" in reply.text
    [answer] = await conversation.handle(msg("who attends from Germany?"))
    assert isinstance(answer, Answer)


async def test_questions_are_answered_off_the_event_loop(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    threads: list[threading.Thread] = []
    real = qa.answer

    def recording(*args: object, **kwargs: object) -> Answer:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(qa, "answer", recording)
    [answer] = await conversation.handle(msg("who attends from Germany?"))
    assert isinstance(answer, Answer) and threads
    assert threads[0] is not threading.main_thread()


async def test_each_change_names_what_changed(store: Store, settings: Settings) -> None:
    changes: list[Change] = []

    async def changed(what: Change) -> None:
        changes.append(what)

    conversation = Conversation(
        *repositories(store), qa.Index.build([]), settings, on_change=changed
    )
    await conversation.handle(msg("/subscribe"))
    await conversation.handle(msg("/settings digest every 6"))
    await conversation.handle(msg("/sources add https://news.example/rss"))
    [feed] = await store.sources.active()
    await conversation.handle(msg(f"/sources remove {feed.id}"))
    await conversation.handle(msg("/unsubscribe"))
    assert changes == [
        Change(chat=CHAT),
        Change(chat=CHAT),
        Change(source_id=feed.id),
        Change(source_id=feed.id),
        Change(chat=CHAT),
    ]


async def test_help_is_generated_from_the_table_with_the_platform_prefix(
    conversation: Conversation,
) -> None:
    from bot.commands import COMMANDS

    [telegram] = await conversation.handle(msg("/help"))
    [slack] = await conversation.handle(msg("/help", command_prefix="/newsbot "))
    assert isinstance(telegram, Notice) and isinstance(slack, Notice)
    for command in COMMANDS:
        argument = " <question>" if command.argument else ""
        assert f"/{command.name}{argument} – {command.help_en}" in telegram.text
        assert f"/newsbot {command.name}{argument} – {command.help_en}" in slack.text
    assert "/newsbot settings digest 07:30" in slack.text
    [unknown] = await conversation.handle(msg("/nope", command_prefix="/newsbot "))
    assert isinstance(unknown, Notice) and "/newsbot nope" in unknown.text


async def test_setting_errors_speak_the_chats_language(conversation: Conversation) -> None:
    await conversation.handle(msg("/subscribe", lang="de"))
    [bad] = await conversation.handle(msg("/settings quiet 22:00-25:00"))
    assert isinstance(bad, Notice) and "„25:00“ ist keine Uhrzeit" in bad.text
    [bad] = await conversation.handle(msg("/settings frobs 3"))
    assert isinstance(bad, Notice) and "unbekannte Einstellung „frobs“" in bad.text


async def test_quiet_hours_with_equal_start_and_end_are_refused(
    conversation: Conversation, store: Store
) -> None:
    """`/settings quiet 22:00-22:00` was accepted and held every alert for 24 hours."""
    await conversation.handle(msg("/subscribe"))
    [bad] = await conversation.handle(msg("/settings quiet 22:00-22:00"))
    assert isinstance(bad, Notice) and "22:00 to 22:00" in bad.text and "22:00-07:00" in bad.text
    sub = await store.subscriptions.subscription(CHAT)
    assert sub is not None and (sub.prefs.quiet_start, sub.prefs.quiet_end) == (None, None)


@pytest.mark.parametrize(
    ("chat_lang", "question", "reply"),
    [
        ("en", "Кто напал на Киев?", "I don't know"),
        ("en", "谁袭击了基辅？", "I don't know"),
        ("de", "Кто напал на Киев?", "Das weiß ich nicht"),
        # A question in one of our languages is answered in it, whatever the chat's language.
        ("en", "Wer hat Kiew mit Raketen angegriffen?", "Das weiß ich nicht"),
        ("de", "Who attacked Kyiv with rockets?", "I don't know"),
    ],
)
async def test_i_dont_know_speaks_the_questions_language_else_the_chats(
    conversation: Conversation, chat_lang: str, question: str, reply: str
) -> None:
    """A Russian or Chinese question in an English private chat was answered in German."""
    await conversation.handle(msg("/subscribe", lang=chat_lang))
    [answer] = await conversation.handle(msg(question, lang=chat_lang))
    assert isinstance(answer, Answer) and answer.text is None
    assert plain(answer).startswith(reply), plain(answer)


async def test_digest_command_applies_the_chats_filters(conversation: Conversation) -> None:
    await conversation.handle(msg("/subscribe"))
    await conversation.handle(msg("/settings countries Peru"))
    [empty] = await conversation.handle(msg("/digest"))
    assert isinstance(empty, Digest) and empty.items == ()
    await conversation.handle(msg("/settings countries Ukraine"))
    [found] = await conversation.handle(msg("/digest"))
    assert isinstance(found, Digest) and len(found.items) == 1


def test_settings_refuse_filters_too_long_for_a_chat_and_normalise_minus_zero() -> None:
    from bot.conversation import SettingError, change

    prefs, _ = change(Preferences(), "threshold", "-0")
    assert prefs.alert_threshold == 0.0 and str(prefs.alert_threshold) == "0.0"
    with pytest.raises(SettingError):
        change(Preferences(), "include", ",".join(f"w{i}" for i in range(3000)))
    with pytest.raises(SettingError):
        change(Preferences(), "threshold", "nan")
    prefs, _ = change(Preferences(), "countries", "Ukraine, Syria, Ukraine")
    assert prefs.countries == ("Ukraine", "Syria")


async def test_countries_are_understood_in_either_language_and_typos_refused(
    conversation: Conversation, store: Store
) -> None:
    """`countries Syrien` dropped English Syria stories; `Ukriane` was saved, muting the chat."""
    await conversation.handle(msg("/subscribe"))
    [saved] = await conversation.handle(msg("/settings countries Syrien, russland, USA"))
    assert isinstance(saved, Notice)
    sub = await store.subscriptions.subscription(CHAT)
    assert sub is not None and sub.prefs.countries == ("Syria", "Russia", "United States")
    [refused] = await conversation.handle(msg("/settings countries Ukriane, Narnia, Ukraine"))
    assert isinstance(refused, Notice) and "Ukriane, Narnia" in refused.text
    kept = await store.subscriptions.subscription(CHAT)
    assert kept is not None and kept.prefs.countries == sub.prefs.countries
    await conversation.handle(msg("/settings lang de"))
    [shown] = await conversation.handle(msg("/settings"))
    assert isinstance(shown, Notice) and "Länder: Syrien, Russland, USA" in shown.text
    [cleared] = await conversation.handle(msg("/settings countries aus"))
    assert isinstance(cleared, Notice)
    none = await store.subscriptions.subscription(CHAT)
    assert none is not None and none.prefs.countries == ()


async def test_sources_list_shows_each_feed_once_and_marks_a_query(
    conversation: Conversation,
) -> None:
    """An unnamed feed was listed as "URL — URL"; `…/json` and `…/json?x=1` looked the same."""
    await conversation.handle(msg("/subscribe"))
    await conversation.handle(msg("/sources add https://news.example/json"))
    await conversation.handle(msg("/sources add https://news.example/json?x=1 Filtered"))
    for command in ("/sources", "/sources list"):
        [listing] = await conversation.handle(msg(command))
        assert isinstance(listing, Notice)
        lines = listing.text.splitlines()[1:]
        assert [line.split(". ", 1)[1] for line in lines] == [
            "https://news.example/json",
            "Filtered — https://news.example/json?…",
        ]


async def test_questions_never_cite_another_chats_own_feed(
    store: Store, settings: Settings
) -> None:
    index = qa.Index.build([])
    report = await jobs.ingest([SEED], store.catalog, thresholds=Thresholds())
    [(seed, _)] = report.changed
    # The seed article as one chat's own feed brought it.
    index.add(dataclasses.replace(seed, source="https://own.example/rss"), 0.9)
    await store.sources.add("https://own.example/rss", added_by="test:owner")
    conversation = Conversation(*repositories(store), index, settings)
    owner, other = ChatRef("test", "owner"), ChatRef("test", "other")
    [answer] = await conversation.handle(Inbound(owner, "who attends from Germany?", user="u"))
    assert isinstance(answer, Answer) and answer.text is not None and "Michaelis" in answer.text
    [answer] = await conversation.handle(Inbound(other, "who attends from Germany?", user="u"))
    assert isinstance(answer, Answer) and answer.text is None and answer.sources == ()
    # Nor when asked about that article by id (a reply to an alert it was never sent).
    scoped = Inbound(other, "who attends from Germany?", user="u", reply_to_article=seed.id)
    [answer] = await conversation.handle(scoped)
    assert isinstance(answer, Answer) and answer.text is None and answer.sources == ()


async def test_questions_cite_a_chats_own_feed_once_a_public_source_carried_it_too(
    store: Store, settings: Settings
) -> None:
    """Issue 2 of the review: the folder's copy of a chat feed's article was a duplicate, so
    other chats were answered "I don't know" about it for good."""
    own = "https://own.example/rss"
    await store.sources.add(own, added_by="test:owner")
    [article] = [
        a for a in articles.read([SEED], 5_000_000, ("de", "en")) if isinstance(a, Article)
    ]
    index = qa.Index.build([])
    first = dataclasses.replace(article, id="own#1", source=own)
    _, [(stored, verdict)] = await jobs.store_and_classify(
        [first], store.catalog, thresholds=Thresholds()
    )
    index.add(stored, verdict.score)
    conversation = Conversation(*repositories(store), index, settings)
    other = ChatRef("test", "other")
    question = Inbound(other, "who attends from Germany?", user="u")
    [answer] = await conversation.handle(question)
    assert isinstance(answer, Answer) and answer.text is None
    # The same text from the shared folder: stored once, now for everyone.
    counts, _ = await jobs.store_and_classify([article], store.catalog, thresholds=Thresholds())
    assert counts.duplicate == 1
    [answer] = await conversation.handle(question)
    assert isinstance(answer, Answer) and answer.text is not None and "Michaelis" in answer.text
    scoped = Inbound(other, "who attends from Germany?", user="u", reply_to_article="own#1")
    [answer] = await conversation.handle(scoped)
    assert isinstance(answer, Answer) and answer.text is not None
    # Another chat's digest lists it now too.
    digest_ = await conversation.digest(other, "en")
    assert [item.article_id for item in digest_.items] == ["own#1"]
