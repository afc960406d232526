"""How cost grows with the work: each row ×10, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/scale.py [--max 10000] [--db sqlite,postgresql]

Rows, each run in a fresh child process (so peak memory is the row's own):
- ingest N feed entries: parse, store, classify, cluster and route (to 10 subscribed chats);
- send a digest to N chats through the ledger and outbox against a recording platform on a
  virtual clock: composition cost per message, database round-trips per message (counted with
  SQLAlchemy's before_cursor_execute event);
- the store's size on disk after the row.
Each prints time, per-item cost (wall and CPU seconds of the process) and peak RSS; the
per-item ratio to the previous size shows a superlinear step at a glance (target: within 1.5x
from 10k to 100k, or a MISSED line). 100k rows
take long on a loaded machine, so `--max` defaults to 10,000. PostgreSQL rows use
$NEWSBOT_TEST_POSTGRES_URL (its public schema is dropped and recreated for every row) and are
skipped when no server answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks._common import (  # noqa: E402
    Targets,
    classify_and_route,
    feed_document,
    peak_rss_mb,
    shared_dir,
    skip_unless,
)

POSTGRES = os.environ.get(
    "NEWSBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
FLAT = 1.5


async def _reset_postgres(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await engine.dispose()


def _folder_mb(folder: str) -> float:
    """Megabytes in `folder` (the SQLite file with its WAL and shared-memory files)."""
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)) / 1e6


async def _size(store: Any, url: str, folder: str) -> float:
    if url.startswith("sqlite"):
        return _folder_mb(folder)
    async with store.engine.connect() as conn:
        size = (await conn.execute(sa.text("SELECT pg_database_size(current_database())"))).scalar()
    return float(size) / 1e6


def _count_round_trips(store: Any) -> list[int]:
    counter = [0]

    def count(*args: Any) -> None:
        counter[0] += 1

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    return counter


async def ingest_row(db: str, size: int, corpus: Path) -> dict[str, Any]:
    from bot import feeds, jobs, lang, search
    from bot.models import ChatRef, Thresholds
    from bot.store import Store

    records = [json.loads(line) for line in (corpus / "articles.jsonl").open()]
    document = feed_document(records, size, name="scale")
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scale.sqlite3" if db == "sqlite" else POSTGRES
        if db != "sqlite":
            await _reset_postgres(url)
        async with Store.open(url) as store:
            for n in range(10):
                await store.subscriptions.subscribe(ChatRef("console", f"chat-{n}"), "en")
            # Warm up first: simplemma and the classifier load their data on first use.
            warm, _ = feeds.parse(
                feed_document(records, 3, name="scale"), url="https://warm.example/", now=now
            )
            jobs.classify_all(warm, Thresholds())
            # Entries full of function words skip the dictionaries; load them all the same, and
            # the full-text index's lemma data (10 s on this machine, once per process).
            lang.detect("Qwertz Uiop")
            search.documents(warm)
            trips = _count_round_trips(store)
            phases: dict[str, float] = {}
            cpu = time.process_time()
            started = mark = time.perf_counter()
            entries, _ = await asyncio.to_thread(
                feeds.parse, document, url="https://scale.example/feed", now=now
            )
            phases["parse"] = time.perf_counter() - mark
            mark = time.perf_counter()
            _, changed = await store.catalog.add_articles(entries, seen_at=now)
            phases["store"] = time.perf_counter() - mark
            mark = time.perf_counter()

            def done(phase: str) -> None:
                nonlocal mark
                phases[phase] = time.perf_counter() - mark
                mark = time.perf_counter()

            await classify_and_route(store, changed, now, done)
            total = time.perf_counter() - started
            cpu = time.process_time() - cpu
            disk = await _size(store, url, tmp)
    return {
        "seconds": total,
        "cpu": cpu,
        "items": len(entries),
        "phases": phases,
        "round_trips": trips[0],
        "disk_mb": disk,
    }


async def outbox_row(db: str, size: int) -> dict[str, Any]:
    from bot import jobs
    from bot.ledger import DigestOwed
    from bot.models import Article, ChatRef, Thresholds
    from bot.outbox import Outbox
    from bot.store import Store
    from tests.fakes import FakeChat, VirtualClock

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scale.sqlite3" if db == "sqlite" else POSTGRES
        if db != "sqlite":
            await _reset_postgres(url)
        async with Store.open(url) as store:
            story = [
                Article(f"s-{n}", f"Troops massed at the border {n}", "Fighting broke out.", "en")
                for n in range(5)
            ]
            await store.catalog.add_articles(story)
            await store.catalog.save_verdicts(jobs.classify_all(story, Thresholds()))
            chats = [ChatRef("telegram", str(100_000 + n)) for n in range(size)]
            for chat in chats:
                await store.subscriptions.subscribe(chat, "en")
            payload = DigestOwed(tuple(a.id for a in story))
            await store.ledger.enqueue_many([(chat, "slot", payload, None) for chat in chats])
            # The ledger stamps rows with wall-clock time: the virtual clock starts there too.
            clock = VirtualClock(datetime.now(UTC))
            platform = FakeChat("telegram", clock)
            composing = [0.0]
            real_compose = store.ledger.compose

            async def timed_compose(groups: Any, now: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await real_compose(groups, now)
                finally:
                    composing[0] += time.perf_counter() - began

            store.ledger.compose = timed_compose  # type: ignore[method-assign]
            trips = _count_round_trips(store)
            box = Outbox(
                store.ledger,
                store.subscriptions,
                {"telegram": platform},
                clock=clock,
                sleep=clock.sleep,
            )
            virtual_start = clock.now
            cpu = time.process_time()
            started = time.perf_counter()
            await box.drain(max_passes=size * 10)
            total = time.perf_counter() - started
            cpu = time.process_time() - cpu
            disk = await _size(store, url, tmp)
            virtual = (clock.now - virtual_start) / timedelta(seconds=1)
    return {
        "seconds": total,
        "cpu": cpu,
        "items": len(platform.sent),
        "compose_ms": composing[0] / max(1, len(platform.sent)) * 1000,
        "round_trips": trips[0],
        "virtual_seconds": virtual,
        "disk_mb": disk,
    }


def child(kind: str, db: str, size: int, corpus: Path) -> None:
    """Run one row and print its figures as one JSON line."""
    if kind == "ingest":
        result = asyncio.run(ingest_row(db, size, corpus))
    else:
        result = asyncio.run(outbox_row(db, size))
    result["peak_mb"] = peak_rss_mb()
    print(json.dumps(result))


def postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=shared_dir() / "corpus")
    parser.add_argument("--max", type=int, default=10_000, help="largest size (1000 × 10^k)")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--kinds", default="ingest,outbox")
    parser.add_argument("--row", nargs=3, metavar=("KIND", "DB", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    skip_unless(args.corpus / "articles.jsonl", "research corpus")
    if args.row:
        child(args.row[0], args.row[1], int(args.row[2]), args.corpus)
        return 0
    targets = Targets()
    sizes = [s for s in (1_000, 10_000, 100_000) if s <= args.max]
    dbs = [d for d in args.db.split(",") if d == "sqlite" or postgres_up()]
    print(f"sizes {sizes}, databases {dbs} (each row in its own process)")
    header = (
        f"{'row':8} {'db':10} {'size':>7} {'seconds':>8} {'per item':>10} {'×prev':>6} "
        f"{'CPU s':>7} {'CPU/item':>9} {'×prev':>6} "
        f"{'trips/item':>10} {'peak MB':>8} {'disk MB':>8}  detail"
    )
    print(header)
    for kind in args.kinds.split(","):
        for db in dbs:
            previous: float | None = None
            previous_cpu: float | None = None
            for size in sizes:
                run = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--corpus",
                        str(args.corpus),
                        "--row",
                        kind,
                        db,
                        str(size),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if run.returncode != 0:
                    print(
                        f"{kind:8} {db:10} {size:7} failed: {run.stderr.strip().splitlines()[-1:]}"
                    )
                    targets.check(f"{kind} {db} {size}", False, "crashed", "a figure")
                    continue
                row = json.loads(run.stdout.strip().splitlines()[-1])
                per = row["seconds"] / max(1, row["items"])
                growth = per / previous if previous else float("nan")
                cpu_per = row["cpu"] / max(1, row["items"])
                cpu_growth = cpu_per / previous_cpu if previous_cpu else float("nan")
                if kind == "ingest":
                    detail = ", ".join(f"{k} {v:.2f}s" for k, v in row["phases"].items())
                else:
                    detail = (
                        f"compose {row['compose_ms']:.2f} ms/msg, "
                        f"{row['virtual_seconds']:.0f} s virtual"
                    )
                print(
                    f"{kind:8} {db:10} {size:7} {row['seconds']:8.2f} {per * 1000:8.3f}ms "
                    f"{growth:6.2f} {row['cpu']:7.1f} {cpu_per * 1000:7.3f}ms {cpu_growth:6.2f} "
                    f"{row['round_trips'] / max(1, row['items']):10.2f} "
                    f"{row['peak_mb']:8.0f} {row['disk_mb']:8.1f}  {detail}",
                    flush=True,
                )
                if kind == "outbox":
                    targets.check(
                        f"outbox {db} {size} chats delivered",
                        row["items"] == size,
                        str(row["items"]),
                        str(size),
                    )
                if previous and size >= 100_000:
                    targets.check(
                        f"{kind} {db} per-item cost 10k→100k",
                        growth <= FLAT,
                        f"{growth:.2f}x",
                        f"<= {FLAT}x",
                    )
                    # CPU seconds move less with the machine's other load than wall time does.
                    targets.check(
                        f"{kind} {db} per-item CPU 10k→100k",
                        cpu_growth <= FLAT,
                        f"{cpu_growth:.2f}x",
                        f"<= {FLAT}x",
                    )
                previous, previous_cpu = per, cpu_per
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
