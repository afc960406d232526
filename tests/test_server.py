import pytest
from aiohttp import web

from bot.chat import StartError
from bot.chat.server import bound_port, listen


async def test_listen_picks_a_port_and_a_taken_one_is_a_start_error_naming_the_keys() -> None:
    first = await listen(web.Application(), "127.0.0.1", 0, "x.host/port")
    try:
        port = bound_port(first)
        assert port is not None and port > 0
        with pytest.raises(
            StartError, match=rf"^x\.host/port: cannot listen on 127\.0\.0\.1:{port} "
        ):
            await listen(web.Application(), "127.0.0.1", port, "x.host/port")
    finally:
        await first.cleanup()
    assert bound_port(None) is None
