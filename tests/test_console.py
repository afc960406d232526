import asyncio
import io
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bot.chat.console import CHAT, PROMPT, ConsoleChat, stdin_lines
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
    assert out.getvalue() == f"{PROMPT}\n\necho /help\n\necho who?\n\n"


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


async def test_stdin_lines_reads_files_and_pipes_and_ends_at_eof(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("/help\nwer? \xff\n".encode("latin-1"))  # one byte that is not UTF-8
    with path.open(encoding="utf-8") as stream:
        got = [line async for line in stdin_lines(stream)]
    assert got == ["/help\n", "wer? \ufffd\n"]
    read_end, write_end = os.pipe()
    os.close(write_end)
    with os.fdopen(read_end) as closed:
        assert [line async for line in stdin_lines(closed)] == []


async def test_a_closed_stdin_is_end_of_input() -> None:
    stream = io.TextIOWrapper(io.BytesIO(b"x\n"))
    stream.close()
    assert [line async for line in stdin_lines(stream)] == []
