"""Pipeline benchmark: file dropped → alert; 10,000 feed entries ingested + classified; fan-out.

Prints:
1. latency from writing a file into the watched folder to the platform acknowledging its alert
   (p50 / p95 over several drops; target p50 < 2 s), measured through the real service
   (`bot.app.run`: watchfiles, ingest, classify, ledger, outbox) with a recording chat;
2. seconds to parse, store, classify and route 10,000 feed entries (target < 10 s), per phase
   in wall and CPU time (the process's, worker threads included: on a shared machine the
   wall figure mostly says how loaded it was, so the load average is printed too);
3. a digest fan-out to 1,000 chats through the outbox against a fake platform that answers 429
   whenever Telegram's limits (30 msg/s, 1 msg/s per chat) are exceeded: achieved msg/s
   (target >= 27, i.e. 90 % of 30/s) and 429s (target 0). Takes about 35 s by design.

    .venv/bin/python benchmarks/pipeline.py [--corpus PATH] [--skip-fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    Targets,
    classify_and_route,
    feed_document,
    shared_dir,
    skip_unless,
)
from bot import app, config, feeds, jobs, lang  # noqa: E402
from bot.chat import DeliveryError, Handler  # noqa: E402
from bot.chat.telegram import TelegramChat  # noqa: E402
from bot.ledger import DigestOwed  # noqa: E402
from bot.models import Article, ChatRef, Post, Sent, Thresholds  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.store import Store  # noqa: E402

DEFAULT_CORPUS = shared_dir() / "corpus"
DROP_TEXT = (
    "date 2026-11\n"
    "Kiew (dpa) – Russische Truppen haben in der Nacht zum {n}. Mal die Stadt mit Raketen "
    "angegriffen. Nach Angaben des ukrainischen Militärs wurden bei den Luftangriffen "
    "mindestens {n} Zivilisten getötet, die Armee meldete schwere Kämpfe an der Front "
    "im Gebiet {place}.\n"
)
PLACES = ["Charkiw", "Saporischschja", "Donezk", "Cherson", "Sumy", "Odessa", "Dnipro", "Lwiw"]


class RecordingChat:
    """Acknowledges every post at once and notes when."""

    def __init__(self, platform: str = "console") -> None:
        self.platform = platform
        self.limits = TelegramChat.limits
        self.acked: list[tuple[float, Post]] = []
        self.event = asyncio.Event()

    async def start(self, handler: Handler) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        self.acked.append((time.perf_counter(), post))
        self.event.set()
        return Sent((str(len(self.acked)),))


class LimitedPlatform:
    """A Telegram-like platform: 429 when over 30 msg/s overall or 1 msg/s per chat."""

    platform = "telegram"
    limits = TelegramChat.limits

    def __init__(self) -> None:
        self.window: deque[float] = deque()
        self.last: dict[str, float] = {}
        self.accepted = 0
        self.rejected = 0
        self.latencies: list[float] = []
        self.first = self.last_time = 0.0

    async def start(self, handler: Handler) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: ChatRef, post: Post, *, skip_parts: int = 0) -> Sent:
        began = time.perf_counter()
        await asyncio.sleep(0.005)  # a loopback round trip
        now = time.perf_counter()
        while self.window and self.window[0] <= now - 1.0:
            self.window.popleft()
        if len(self.window) >= 30 or now - self.last.get(chat.chat_id, -10.0) < 1.0:
            self.rejected += 1
            raise DeliveryError("Too Many Requests: retry after 1", retry_after=1.0)
        self.window.append(now)
        self.last[chat.chat_id] = now
        self.accepted += 1
        self.first = self.first or now
        self.last_time = now
        self.latencies.append(now - began)
        return Sent((str(self.accepted),))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def drop_texts(corpus: Path, drops: int) -> list[str]:
    """Distinct conflict stories to drop: labelled ones from the corpus, else generated ones."""
    labels = corpus / "labels-dev.jsonl"
    if labels.exists():
        yes = {
            json.loads(line)["id"]
            for line in labels.read_text().splitlines()
            if json.loads(line)["label"] == "yes"
        }
        records = [
            json.loads(line) for line in (corpus / "articles.jsonl").read_text().splitlines()
        ]
        from bot.classify import classify

        # Latency is measured on alerts, so take stories the classifier alerts on.
        chosen = [
            r
            for r in records
            if r["id"] in yes
            and r["id"].startswith("de-")
            and classify(Article(r["id"], r["title"], r["text"], "de")).score >= 0.85
        ][:drops]
        if len(chosen) == drops:
            return [f"{r['title'] or ''}\n\n{r['text']}\n".lstrip() for r in chosen]
    return [DROP_TEXT.format(n=n + 3, place=PLACES[n % len(PLACES)]) for n in range(drops)]


async def drop_to_alert(texts: list[str]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        settings = config.load(
            ROOT / "config" / "newsbot.toml",
            env={},
            overrides={
                "storage": {"data_dir": str(Path(tmp) / "data")},
                "articles": {"folder": str(folder)},
            },
        )
        chat = RecordingChat()
        async with Store.open(settings.storage.url()) as store:
            await store.subscriptions.subscribe(ChatRef("console", "bench"), "de")
        stop = asyncio.Event()
        service = asyncio.create_task(app.run(settings, adapters=[chat], stop=stop))
        await asyncio.sleep(1.5)  # let the service start and the watcher settle
        latencies = []
        for n, text in enumerate(texts):
            chat.event.clear()
            before = len(chat.acked)
            path = folder / f"drop-{n}.txt"
            started = time.perf_counter()
            path.write_text(text, encoding="utf-8")
            while len(chat.acked) == before:
                try:
                    await asyncio.wait_for(chat.event.wait(), 10)
                except TimeoutError:
                    break
                chat.event.clear()
            if len(chat.acked) > before:
                latencies.append(chat.acked[before][0] - started)
            await asyncio.sleep(0.3)
        stop.set()
        await service
    return latencies


async def ten_thousand(
    corpus: Path, count: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    records = [json.loads(line) for line in (corpus / "articles.jsonl").read_text().splitlines()]
    document = feed_document(records, count)
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    # A running service has loaded its language dictionaries and classifier data already.
    lang.detect("Qwertz Uiop")
    warm, _ = feeds.parse(
        feed_document(records, 3, name="warm"), url="https://w.example/", now=datetime.now(UTC)
    )
    jobs.classify_all(warm, Thresholds())
    with tempfile.TemporaryDirectory() as tmp:
        async with Store.open(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3") as store:
            await store.subscriptions.subscribe(ChatRef("console", "bench"), "en")
            start, cpu_start = time.perf_counter(), time.process_time()
            mark, cpu_mark = start, cpu_start

            def done(phase: str) -> None:
                nonlocal mark, cpu_mark
                phases[phase] = time.perf_counter() - mark
                cpu[phase] = time.process_time() - cpu_mark
                mark, cpu_mark = time.perf_counter(), time.process_time()

            entries, _bozo = await asyncio.to_thread(
                feeds.parse, document, url="https://bench.example/feed", now=datetime.now(UTC)
            )
            done("parse")
            _counts, changed = await store.catalog.add_articles(entries)
            done("store")
            await classify_and_route(store, changed, datetime.now(UTC), done)
            total = time.perf_counter() - start
            cpu["total"] = time.process_time() - cpu_start
            phases["entries"] = float(len(entries))
    return total, phases, cpu


async def fan_out(chats: int) -> LimitedPlatform:
    platform = LimitedPlatform()
    with tempfile.TemporaryDirectory() as tmp:
        async with Store.open(f"sqlite+aiosqlite:///{tmp}/fanout.sqlite3") as store:
            article = Article("bench-1", "Troops massed at the border", "Fighting broke out.", "en")
            await store.catalog.add_articles([article])
            await store.catalog.save_verdicts(jobs.classify_all([article], Thresholds()))
            for i in range(chats):
                chat = ChatRef("telegram", str(100000 + i))
                await store.subscriptions.subscribe(chat, "en")
                await store.ledger.enqueue(chat, "slot", DigestOwed(("bench-1",)))
            await Outbox(store.ledger, store.subscriptions, {"telegram": platform}).drain()
    return platform


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=1_000)
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args()
    skip_unless(args.corpus / "articles.jsonl", "research corpus")
    targets = Targets()

    latencies = asyncio.run(drop_to_alert(drop_texts(args.corpus, args.drops)))
    p50 = statistics.median(latencies) if latencies else float("inf")
    # A file is read once it has been unchanged for articles.settle_seconds (so a half-written
    # file is never alerted on): that wait is by design; the target is for what follows it.
    settle = config.ArticlesSettings().settle_seconds
    print(f"file dropped → alert acknowledged: {len(latencies)}/{args.drops} alerts")
    if latencies:
        print(
            f"  p50 {p50 * 1000:.0f} ms   p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
            f"   (of which the settle time: {settle * 1000:.0f} ms)"
        )
        print(f"  after the file settled: p50 {(p50 - settle) * 1000:.0f} ms   (target < 2000 ms)")
    targets.check(
        "drop-to-alert p50 after settling",
        p50 - settle < 2.0,
        f"{(p50 - settle) * 1000:.0f} ms",
        "< 2000 ms",
    )
    targets.check(
        "drop-to-alert alerts",
        len(latencies) == args.drops,
        f"{len(latencies)}/{args.drops}",
        f"{args.drops}/{args.drops}",
    )

    total, phases, cpu = asyncio.run(ten_thousand(args.corpus, args.entries))
    detail = ", ".join(f"{k} {v:.2f} s" for k, v in phases.items() if k != "entries")
    cpu_detail = ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items() if k != "total")
    print(
        f"{int(phases['entries'])} feed entries parsed, stored, classified, routed: "
        f"{total:.2f} s (target < 10 s)"
    )
    print(f"  {detail}")
    print(
        f"  CPU: {cpu_detail}; total {cpu['total']:.2f} s"
        f"   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    targets.check(f"{args.entries}-entry pipeline", total < 10.0, f"{total:.2f} s", "< 10 s")

    if not args.skip_fanout:
        platform = asyncio.run(fan_out(args.chats))
        span = platform.last_time - platform.first
        rate = (platform.accepted - 1) / span if span > 0 else 0.0
        print(
            f"digest fan-out to {args.chats} chats: {platform.accepted} delivered in {span:.1f} s"
        )
        print(f"  {rate:.1f} msg/s (target >= 27)   429s: {platform.rejected} (target 0)")
        targets.check("fan-out rate", rate >= 27, f"{rate:.1f} msg/s", ">= 27 msg/s")
        targets.check("fan-out 429s", platform.rejected == 0, str(platform.rejected), "0")
        targets.check(
            "fan-out delivered",
            platform.accepted == args.chats,
            str(platform.accepted),
            str(args.chats),
        )
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
