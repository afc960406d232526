"""The fake Slack behaves like Slack where our tests rely on it, seen through the real slack_sdk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .fake_slack import FakeSlack

TOKEN = "xoxb-fake"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN) as server:
        server.add_channel("C1")
        server.add_channel("C2", member=False)
        server.add_user("UA", admin=True)
        yield server


def client(fake: FakeSlack, token: str = TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.base_url)


async def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return str(caught.value.response["error"]), int(caught.value.response.status_code)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def test_auth_and_lookups(fake: FakeSlack) -> None:
    web = client(fake)
    assert (await web.auth_test())["user_id"] == "UBOT"
    assert await error_of(client(fake, "xoxb-wrong").auth_test()) == ("invalid_auth", 200)
    assert (await web.users_info(user="UA"))["user"]["is_admin"] is True
    assert (await error_of(web.users_info(user="UX")))[0] == "user_not_found"
    assert (await web.conversations_info(channel="C2"))["channel"]["is_member"] is False
    opened = await client(fake, fake.app_token).apps_connections_open(app_token=fake.app_token)
    assert opened["url"].startswith("ws://127.0.0.1:")


async def test_block_kit_is_validated_like_slack(fake: FakeSlack) -> None:
    fake.clock = Clock()  # no rate limit in the way: time never moves, channels differ
    web = client(fake)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"blocks": [section("x")] * 51, "text": "t"}, "invalid_blocks"),
        ({"blocks": [section("x" * 3001)], "text": "t"}, "invalid_blocks"),
        (
            {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "text": "t"},
            "invalid_blocks",
        ),
        ({"blocks": [section("fine")]}, "no_text"),
    ]
    for n, (kwargs, error) in enumerate(cases):
        fake.add_channel(f"CV{n}")
        call = web.chat_postMessage(channel=f"CV{n}", **kwargs)
        if "text" in kwargs:
            assert (await error_of(call))[0] == error
        else:
            with pytest.warns(UserWarning, match="text"):  # slack_sdk's own hint
                assert (await error_of(call))[0] == error
    ok = await web.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3000)] * 50)
    assert ok["ts"] and fake.messages[0].visible.startswith("xxx")
    assert len(fake.invalid()) == 4


async def test_channels_rate_limit_and_scripted_failures(fake: FakeSlack) -> None:
    clock = Clock()
    fake.clock = clock
    web = client(fake)
    assert (await error_of(web.chat_postMessage(channel="C404", text="t")))[
        0
    ] == "channel_not_found"
    assert (await error_of(web.chat_postMessage(channel="C2", text="t")))[0] == "not_in_channel"
    await web.chat_postMessage(channel="C1", text="one")
    assert await error_of(web.chat_postMessage(channel="C1", text="two")) == ("ratelimited", 429)
    assert fake.rate_limited() == 1
    clock.now += 1.0
    posted = await web.chat_postMessage(channel="C1", text="two")
    clock.now += 1.0
    await web.chat_update(channel="C1", ts=posted["ts"], text="edited")
    clock.now += 1.0
    await web.chat_postEphemeral(channel="C1", user="UA", text="only you")
    fake.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=3)
    clock.now += 1.0
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C1", text="three")
    assert caught.value.response.headers["Retry-After"] == "3"
    assert [m.method for m in fake.messages] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
    ]
    assert fake.messages[2].ts == posted["ts"] and fake.messages[3].user == "UA"
