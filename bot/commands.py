"""The one table of commands: name, handler, who may use it, and help in English and German.

`Conversation` dispatches from it, `/help` is generated from it, the Telegram menu
(setMyCommands) and the Slack help and app manifest are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.models import CommandInfo


class Access(StrEnum):
    """Who may use a command."""

    ANYONE = "anyone"
    ADMIN = "admin"
    # Anyone may look (no argument); changing something needs an admin.
    ADMIN_WITH_ARGUMENT = "admin-with-argument"


@dataclass(frozen=True, slots=True)
class Command:
    """One command the bot understands."""

    name: str
    # The `Conversation` method that runs it: (msg, argument, lang) -> posts.
    handler: str
    access: Access
    help_en: str
    help_de: str
    aliases: tuple[str, ...] = ()
    # Catalogue key of extra help lines (usage examples) shown under the command in /help.
    usage: str | None = None
    # Catalogue key of the argument shown after the name in /help ("<question>").
    argument: str | None = None
    # Advertised in menus and /help.
    listed: bool = True

    def allowed(self, is_admin: bool, argument: str) -> bool:
        """Whether a user with `is_admin` may run this command with `argument`."""
        if self.access is Access.ADMIN:
            return is_admin
        if self.access is Access.ADMIN_WITH_ARGUMENT and argument:
            return is_admin
        return True

    def help(self, lang: str) -> str:
        """The one-line description in `lang` (English unless German)."""
        return self.help_de if lang == "de" else self.help_en

    def info(self) -> CommandInfo:
        """The command as plain data for chat adapters (menus, filters)."""
        return CommandInfo(
            self.name,
            (("en", self.help_en), ("de", self.help_de)),
            aliases=self.aliases,
            listed=self.listed,
        )


COMMANDS: tuple[Command, ...] = (
    Command(
        "start",
        "start",
        Access.ADMIN,
        "Welcome, and subscribe this chat",
        "Willkommen, und diesen Chat abonnieren",
    ),
    Command(
        "help", "help", Access.ANYONE, "What the bot does and how to use it", "Was der Bot tut"
    ),
    Command(
        "subscribe",
        "subscribe",
        Access.ADMIN,
        "Receive alerts and digests here",
        "Meldungen und Überblicke hier erhalten",
    ),
    Command(
        "unsubscribe",
        "unsubscribe",
        Access.ADMIN,
        "Stop alerts and digests here",
        "Meldungen und Überblicke abbestellen",
        aliases=("stop",),
    ),
    Command("digest", "digest_command", Access.ANYONE, "The digest now", "Den Überblick jetzt"),
    Command(
        "settings",
        "settings_command",
        Access.ADMIN_WITH_ARGUMENT,
        "Show or change this chat's settings",
        "Einstellungen dieses Chats zeigen oder ändern",
        usage="help_settings",
    ),
    Command(
        "sources",
        "sources_command",
        Access.ADMIN_WITH_ARGUMENT,
        "Feeds this chat watches; add or remove one",
        "Feeds dieses Chats; einen hinzufügen oder entfernen",
        usage="help_sources",
    ),
    Command(
        "ask",
        "ask_command",
        Access.ANYONE,
        "Ask a question about the articles",
        "Eine Frage zu den Artikeln stellen",
        argument="arg_question",
    ),
)

BY_NAME: dict[str, Command] = {
    name: command for command in COMMANDS for name in (command.name, *command.aliases)
}


def find(name: str) -> Command | None:
    """The command called `name` (without the leading slash), or None."""
    return BY_NAME.get(name.lower())


def infos() -> tuple[CommandInfo, ...]:
    """Every command as plain data for the chat adapters."""
    return tuple(command.info() for command in COMMANDS)


def slack_usage_hint() -> str:
    """The usage hint of the `/newsbot` slash command (app manifest and Slack help)."""
    names = [c.name for c in COMMANDS if c.listed and c.name != "start"]
    return " | ".join(f"{n} …" if n in ("settings", "sources", "ask") else n for n in names)


SLACK_DESCRIPTION = "Conflict-news alerts, digests and questions about the articles"
"""The description of the `/newsbot` slash command in the app manifest."""
