"""A digest to 1,000 Telegram private chats: our Outbox and pacer vs the fake Bot API, real time.

    .venv/bin/python benchmarks/telegram_fanout.py [--chats 1000]

The real PTB stack talks to tests/fake_telegram.py in-process (its BaseRequest, no sockets), and
the fake enforces Telegram's flood limits strictly (30 msg/s overall, 1 msg/s per chat). Prints
the achieved rate (target >= 27 msg/s, 90 % of 30), the 429s seen (target 0), total time and
the p50/p95 of one adapter.send call. Exits 1 when a target is missed. Takes ~35 s by design.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Targets  # noqa: E402
from bot import jobs  # noqa: E402
from bot.chat.telegram import TelegramChat  # noqa: E402
from bot.config import TelegramSettings  # noqa: E402
from bot.ledger import DigestOwed  # noqa: E402
from bot.models import ChatRef, Inbound, Post, Sent, Thresholds  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:BENCH-token"
SEED = ROOT / "articles" / "nato-russland-rat-2022-01.txt"
TARGET_RATE = 27.0


class TimedChat:
    """Wraps the adapter to time each send the Outbox makes."""

    platform = "telegram"
    limits = TelegramChat.limits

    def __init__(self, inner: TelegramChat) -> None:
        self.inner = inner
        self.latencies: list[float] = []

    async def start(self, handler: object) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        began = time.perf_counter()
        try:
            return await self.inner.send(chat, post, skip_parts=skip_parts)
        finally:
            self.latencies.append(time.perf_counter() - began)


async def no_replies(message: Inbound) -> Sequence[Post]:
    return []


async def fan_out(chats: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        async with (
            Store.open(f"sqlite+aiosqlite:///{folder}/fanout.sqlite3") as store,
            FakeTelegram(token=TOKEN) as tg,
        ):
            report = await jobs.ingest([SEED], store.catalog, thresholds=Thresholds())
            article_ids = [article.id for article, _ in report.changed]
            for n in range(chats):
                chat = ChatRef("telegram", str(10_000 + n))
                await store.subscriptions.subscribe(chat, "en")
                payload = DigestOwed(tuple(article_ids))
                await store.ledger.enqueue(chat, "2026-01-01T08:00:00+00:00", payload)

            adapter = TelegramChat(
                TOKEN,
                TelegramSettings(api_url=tg.base_url),
                request=tg.request(),
                get_updates_request=tg.request(),
            )
            await adapter.start(no_replies)
            timed = TimedChat(adapter)
            outbox = Outbox(store.ledger, store.subscriptions, {"telegram": timed})
            stop = asyncio.Event()
            began = time.monotonic()
            sender = asyncio.create_task(outbox.run(stop, idle_seconds=0.5))
            try:
                while outbox.sent + outbox.failed < chats:
                    await asyncio.sleep(0.05)
                    if time.monotonic() - began > chats / 10:
                        break  # far too slow: report what we have
            finally:
                total = time.monotonic() - began
                stop.set()
                await sender
                await adapter.stop()

            sent_chats = {s.chat_id for s in tg.sent}
            rate = len(tg.sent) / total
            latencies = sorted(timed.latencies)
            p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
            p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
            print(f"chats:          {chats}")
            print(f"delivered:      {len(tg.sent)} messages to {len(sent_chats)} chats")
            print(f"failed:         {outbox.failed}")
            print(f"total time:     {total:.1f} s")
            print(f"achieved rate:  {rate:.1f} msg/s (target >= {TARGET_RATE:g})")
            print(f"429 responses:  {tg.rejected_429} (target 0)")
            print(f"send latency:   p50 {p50:.1f} ms, p95 {p95:.1f} ms")
            targets = Targets()
            targets.check(
                "telegram fan-out rate",
                rate >= TARGET_RATE,
                f"{rate:.1f} msg/s",
                f">= {TARGET_RATE:g} msg/s",
            )
            targets.check("telegram fan-out 429s", tg.rejected_429 == 0, str(tg.rejected_429), "0")
            targets.check(
                "telegram fan-out chats reached",
                len(sent_chats) == chats,
                str(len(sent_chats)),
                str(chats),
            )
            return targets.exit_code()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1000)
    args = parser.parse_args()
    return asyncio.run(fan_out(args.chats))


if __name__ == "__main__":
    sys.exit(main())
