from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.health import Check, Health
from bot.metrics import Metrics

Served = tuple[Health, dict[str, Check]]


async def ok() -> str:
    return "ok"


async def refusing() -> str:
    raise ConnectionRefusedError("database down")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, dict[str, Check]]]:
    states: dict[str, Check] = {"database": ok}
    health = Health(Metrics(), states, port=0)
    await health.start()
    yield health, states
    await health.stop()


async def get(port: int | None, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_ready_when_every_check_passes_and_503_naming_the_failing_one(
    served: Served,
) -> None:
    health, states = served
    status, body = await get(health.bound_port, "/healthz")
    assert status == 200 and '"ready": true' in body and '"database": "ok"' in body
    states["database"] = refusing
    status, body = await get(health.bound_port, "/healthz")
    assert status == 503
    assert '"database": "failing: ConnectionRefusedError"' in body
    # Liveness does not depend on the database: the loop answered.
    status, body = await get(health.bound_port, "/healthz?live")
    assert status == 200 and '"live": true' in body


async def test_metrics_page_serves_the_registry(served: Served) -> None:
    health, _ = served
    health.metrics.deliveries.labels("console", "digest", "sent").inc(2)
    status, body = await get(health.bound_port, "/metrics")
    assert status == 200
    assert 'newsbot_deliveries_total{kind="digest",outcome="sent",platform="console"} 2.0' in body
