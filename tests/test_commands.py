"""The one table of commands: complete, consistent, and the source of menus, help and manifest."""

from __future__ import annotations

import re

from bot import commands, qa
from bot.commands import COMMANDS, Access, find
from bot.config import Settings
from bot.conversation import Conversation
from bot.store import Store

from .conftest import ROOT
from .repos import repositories


def test_names_and_aliases_are_unique_and_found() -> None:
    names = [name for c in COMMANDS for name in (c.name, *c.aliases)]
    assert len(names) == len(set(names))
    assert find("STOP") is find("unsubscribe") is not None
    assert find("why") is None  # buttons are actions, not commands


def test_access_rules() -> None:
    subscribe, settings, ask = find("subscribe"), find("settings"), find("ask")
    assert subscribe is not None and settings is not None and ask is not None
    assert subscribe.access is Access.ADMIN and not subscribe.allowed(False, "")
    assert settings.allowed(False, "") and not settings.allowed(False, "alerts off")
    assert settings.allowed(True, "alerts off")
    assert ask.allowed(False, "who?")


async def test_every_command_has_its_handler(store: Store, settings: Settings) -> None:
    conversation = Conversation(*repositories(store), qa.Index.build([]), settings)
    assert set(conversation.handlers) == {c.name for c in COMMANDS}
    assert all(callable(h) for h in conversation.handlers.values())


def test_infos_carry_both_languages() -> None:
    for info in commands.infos():
        assert [lang for lang, _ in info.descriptions] == ["en", "de"]
        assert info.description("de") != "" and info.description("fr") == info.description("en")


def test_slack_manifest_is_derived_from_the_table() -> None:
    manifest = (ROOT / "config" / "slack-manifest.yaml").read_text(encoding="utf-8")
    command = re.search(r"- command: /newsbot\n(?P<body>(?:      .*\n)+)", manifest)
    assert command is not None
    fields = dict(
        line.strip().split(": ", 1) for line in command["body"].splitlines() if ": " in line
    )
    assert fields["description"] == commands.SLACK_DESCRIPTION
    assert fields["usage_hint"] == commands.slack_usage_hint()
    for listed in (c.name for c in COMMANDS if c.listed and c.name != "start"):
        assert listed in fields["usage_hint"]
    for event in ("app_mention", "message.im"):
        assert f"- {event}" in manifest
