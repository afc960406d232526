import itertools

from bot.chat.telegram import TelegramChat
from bot.models import ChatRef
from bot.pacing import Limits, Pacer


def test_global_rate_spaces_slots_evenly() -> None:
    pacer = Pacer(Limits(per_second=10.0))
    slots = [pacer.book(ChatRef("t", str(i)), 0.0) for i in range(20)]
    assert slots[0] == 0.0
    assert all(abs((b - a) - 0.1) < 1e-9 for a, b in itertools.pairwise(slots))


def test_one_message_per_second_per_chat() -> None:
    pacer = Pacer(TelegramChat.limits)
    chat = ChatRef("telegram", "42")
    first, second, third = (pacer.book(chat, 0.0) for _ in range(3))
    assert second - first >= 1.0 and third - second >= 1.0


def test_twenty_per_minute_in_groups() -> None:
    pacer = Pacer(TelegramChat.limits)
    group = ChatRef("telegram", "-100123")
    slots = [pacer.book(group, 0.0) for _ in range(25)]
    # Any 60-second window holds at most 20 of them.
    for i, start in enumerate(slots):
        assert sum(1 for s in slots[i:] if s < start + 60.0) <= 20
    assert slots[20] >= slots[0] + 60.0


def test_pause_holds_every_chat() -> None:
    pacer = Pacer(Limits(per_second=100.0))
    pacer.pause(5.0)
    assert pacer.book(ChatRef("t", "a"), 1.0) == 5.0
    assert pacer.book(ChatRef("t", "b"), 1.0) >= 5.0


def test_threads_share_their_chat_limit() -> None:
    pacer = Pacer(TelegramChat.limits)
    a = pacer.book(ChatRef("telegram", "-100", "1"), 0.0)
    b = pacer.book(ChatRef("telegram", "-100", "2"), 0.0)
    assert b - a >= 1.0
