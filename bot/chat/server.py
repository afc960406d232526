"""Our own HTTP endpoints (Telegram webhook, Slack events, health): listen, or one clear error."""

from __future__ import annotations

from aiohttp import web

from bot.chat import StartError


async def listen(app: web.Application, host: str, port: int, keys: str) -> web.AppRunner:
    """Serve `app` on host:port; a taken port or unknown address is a StartError naming `keys`."""
    # No access log: request lines add noise, and nothing in them is worth keeping.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # port taken, address not on this host: the config's to fix
        await runner.cleanup()
        raise StartError(
            f"{keys}: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    return runner


def bound_port(runner: web.AppRunner | None) -> int | None:
    """The port a runner listens on (port 0 picks a free one); None when not serving."""
    if runner is None or not runner.addresses:
        return None
    return int(runner.addresses[0][1])
