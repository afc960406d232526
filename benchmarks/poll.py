"""One poll cycle over 6,000 feeds on loopback feed servers, with the per-host cap.

    .venv/bin/python benchmarks/poll.py [--feeds 6000] [--hosts 60] [--per-host 4]

The feed servers run in a child process (so the CPU figure is the poller's own) on loopback
addresses 127.0.0.1..127.0.0.N, 100 feeds per host by default. Steady state: every feed's
validators are known, so 80 % answer 304, 15 % have new entries, 2.5 % are slow (2 s) and
2.5 % fail (HTTP 500). Each feed is one `jobs.poll_feed` on a real SQLite store, all started
together as the scheduler does after a start. Prints cycle time, CPU seconds, peak memory,
requests/s and the peak requests in flight per host (target: the cycle ends within the 5-minute
interval, and no host ever sees more than the cap).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks._common import Targets, peak_rss_mb  # noqa: E402
from bot import jobs  # noqa: E402
from bot.fetch import FetchLimits  # noqa: E402
from bot.models import Thresholds  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

INTERVAL = 300.0


def behaviour(n: int) -> str:
    """80 % unchanged, 15 % new entries, 2.5 % slow, 2.5 % failing, spread over the hosts."""
    slot = n % 40
    if slot == 0:
        return "slow"
    if slot == 1:
        return "fail"
    if slot < 8:
        return "new"
    return "fresh"


def serve(hosts: list[str], feeds: int, pipe: Any) -> None:
    """Child process: serve the feeds until told to stop, then report the server's counts."""

    async def main() -> None:
        server = FeedServer(
            behaviours={f"/f{n}": behaviour(n) for n in range(feeds)},  # type: ignore[misc]
            slow_seconds=2.0,
        )
        async with server.serving(hosts) as ports:
            pipe.send(ports)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, pipe.recv)
            pipe.send(
                {
                    "requests": sum(server.requests.values()),
                    "not_modified": server.not_modified,
                    "conditional": sum(server.conditional.values()),
                    # None when the poller failed before its first request.
                    "peak": max(server.peak.values(), default=None),
                    "connections": sum(server.connections.values()),
                }
            )

    asyncio.run(main())


async def cycle(args: argparse.Namespace, ports: dict[str, int]) -> dict[str, float]:
    hosts = list(ports)
    with tempfile.TemporaryDirectory() as tmp:
        async with Store.open(f"sqlite+aiosqlite:///{tmp}/poll.sqlite3") as store:
            for n in range(args.feeds):
                host = hosts[n % len(hosts)]
                await store.sources.add(f"http://{host}:{ports[host]}/f{n}", interval_seconds=300)
            for source in await store.sources.active():
                path = "/" + source.url.rsplit("/", 1)[1]
                # Steady state: the validators of the last cycle are known.
                state = dataclasses.replace(source.state, etag=f'"{path}-0"')
                await store.sources.save_state(dataclasses.replace(source, state=state))
            ids = [s.id for s in await store.sources.active()]
            gates = jobs.PollGates.per_host(args.per_host)
            limits = FetchLimits(total_timeout=10.0)
            # Every host's slots may keep their connection alive between feeds of that host.
            most = args.per_host * len(hosts)
            limits_ = httpx.Limits(max_connections=most, max_keepalive_connections=most)
            async with httpx.AsyncClient(limits=limits_) as client:
                from datetime import UTC, datetime

                now = datetime.now(UTC)
                cpu, wall = time.process_time(), time.perf_counter()
                reports = await asyncio.gather(
                    *(
                        jobs.poll_feed(
                            client,
                            store.sources,
                            store.catalog,
                            store.subscriptions,
                            store.ledger,
                            source_id,
                            limits=limits,
                            allow_private=True,
                            thresholds=Thresholds(),
                            now=now,
                            gates=gates,
                        )
                        for source_id in ids
                    )
                )
                wall = time.perf_counter() - wall
                cpu = time.process_time() - cpu
            size = await asyncio.to_thread(os.path.getsize, f"{tmp}/poll.sqlite3")
    return {
        "wall": wall,
        "cpu": cpu,
        "not_modified": sum(r.not_modified for r in reports),
        "new_entries": sum(r.counts.new for r in reports),
        "errors": sum(r.error is not None for r in reports),
        "db_mb": size / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=6000)
    parser.add_argument("--hosts", type=int, default=60)
    parser.add_argument("--per-host", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the failing feeds' warnings are expected
    hosts = [f"127.0.0.{n}" for n in range(1, args.hosts + 1)]
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=serve, args=(hosts, args.feeds, theirs), daemon=True
    )
    child.start()
    ports = ours.recv()
    try:
        figures = asyncio.run(cycle(args, ports))
    finally:
        ours.send("stop")
        server = ours.recv()
        child.join(10)
    targets = Targets()
    print(
        f"{args.feeds} feeds on {args.hosts} loopback hosts, per-host cap {args.per_host}, "
        "80 % unchanged / 15 % new / 2.5 % slow (2 s) / 2.5 % failing"
    )
    rows = [
        ("cycle time", f"{figures['wall']:.1f} s", f"< {INTERVAL:g} s (the interval)"),
        ("CPU seconds (poller)", f"{figures['cpu']:.1f} s", ""),
        ("CPU per feed", f"{figures['cpu'] / args.feeds * 1000:.2f} ms", ""),
        ("peak memory (RSS)", f"{peak_rss_mb():.0f} MB", ""),
        ("requests/s", f"{server['requests'] / figures['wall']:.0f}", ""),
        ("requests", f"{server['requests']}", ""),
        ("TCP connections", f"{server['connections']}", ""),
        ("304 answers", f"{figures['not_modified']} (server {server['not_modified']})", ""),
        ("new entries stored", f"{figures['new_entries']:.0f}", ""),
        ("failed feeds (backed off)", f"{figures['errors']:.0f}", ""),
        ("peak requests in flight, one host", f"{server['peak']}", f"<= {args.per_host}"),
        ("store size", f"{figures['db_mb']:.1f} MB", ""),
    ]
    for name, value, target in rows:
        print(f"{name:36} {value:>22}  {target}")
    targets.check(
        "poll cycle time",
        figures["wall"] < INTERVAL,
        f"{figures['wall']:.1f} s",
        f"< {INTERVAL:g} s",
    )
    targets.check(
        "per-host cap", server["peak"] <= args.per_host, str(server["peak"]), f"<= {args.per_host}"
    )
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
