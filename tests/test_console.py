import asyncio
import io
from collections.abc import AsyncIterator, Sequence

from bot.chat.console import CHAT, ConsoleChat
from bot.models import Inbound, Notice, Post


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_lines_become_messages_and_replies_are_printed() -> None:
    seen: list[Inbound] = []

    async def handler(message: Inbound) -> Sequence[Post]:
        seen.append(message)
        return [Notice(f"echo {message.text}")]

    out = io.StringIO()
    chat = ConsoleChat(lines("/help\n", "\n", "who?\n"), out=out)
    await chat.start(handler)
    await asyncio.wait_for(chat.finished.wait(), 5)
    await chat.stop()
    assert [m.text for m in seen] == ["/help", "who?"]
    assert all(m.chat == CHAT for m in seen)
    assert out.getvalue() == "echo /help\n\necho who?\n\n"


async def test_a_failing_message_does_not_end_the_session() -> None:
    async def handler(message: Inbound) -> Sequence[Post]:
        if message.text == "boom":
            raise RuntimeError("boom")
        return [Notice("ok")]

    out = io.StringIO()
    chat = ConsoleChat(lines("boom\n", "fine\n"), out=out)
    await chat.start(handler)
    await asyncio.wait_for(chat.finished.wait(), 5)
    assert "Sorry, that failed" in out.getvalue()
    assert out.getvalue().rstrip().endswith("ok")


async def test_stop_cancels_reading() -> None:
    never = asyncio.Event()

    async def endless() -> AsyncIterator[str]:
        await never.wait()
        yield "unreachable"

    async def handler(message: Inbound) -> Sequence[Post]:
        return []

    chat = ConsoleChat(endless(), out=io.StringIO())
    await chat.start(handler)
    await chat.stop()
    assert chat.finished.is_set()
