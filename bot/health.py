"""The operator's endpoint: /healthz (liveness and readiness) and /metrics on a local port."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from bot.chat.server import bound_port, listen
from bot.metrics import Metrics

log = logging.getLogger(__name__)


Check = Callable[[], Awaitable[str]]
"""A readiness probe: returns a short state ("ok", "leader"), raises when not ready."""

CHECK_TIMEOUT = 2.0


@dataclass
class Health:
    """Serves /healthz and /metrics; start with `await health.start()`, stop with `stop()`."""

    metrics: Metrics
    checks: Mapping[str, Check]
    host: str = "127.0.0.1"
    port: int = 0
    # Brings gauges read from the database up to date before each scrape.
    refresh: Callable[[], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def app(self) -> web.Application:
        """The aiohttp application (also used by tests without a socket)."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one, see `bound_port`)."""
        self._runner = await listen(self.app(), self.host, self.port, "ops.http_host/http_port")
        self.bound_port = bound_port(self._runner) or self.port
        log.info("health and metrics on http://%s:%s/", self.host, self.bound_port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def probe(self) -> tuple[bool, dict[str, str]]:
        """Run every readiness check with a timeout; whether all passed, and each one's state."""
        states: dict[str, str] = {}
        ready = True
        for name, check in self.checks.items():
            try:
                states[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT)
            except Exception as exc:  # a failing probe is an answer, not a server error
                ready = False
                states[name] = f"failing: {type(exc).__name__}"
        return ready, states

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness (the loop answers) and, unless ?live, readiness with each check's state."""
        if "live" in request.query:
            return web.json_response({"live": True})
        ready, states = await self.probe()
        body = {"live": True, "ready": ready, "checks": states}
        return web.Response(
            status=200 if ready else 503,
            text=json.dumps(body),
            content_type="application/json",
        )

    async def metrics_page(self, request: web.Request) -> web.Response:
        """Prometheus text exposition."""
        if self.refresh is not None:
            try:
                await asyncio.wait_for(self.refresh(), CHECK_TIMEOUT)
            except Exception as exc:  # the counters are still worth serving
                log.warning("refreshing metrics failed: %s", type(exc).__name__)
        body = await asyncio.to_thread(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
