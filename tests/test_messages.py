"""The message catalogues: every phrase in both languages, with the same placeholders."""

from __future__ import annotations

import string

from bot import messages
from bot.messages import de, en


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_every_phrase_with_the_same_fields() -> None:
    assert set(en.MESSAGES) == set(de.MESSAGES)
    for key, template in en.MESSAGES.items():
        assert fields(template) == fields(de.MESSAGES[key]), key


def test_text_falls_back_to_english_and_fills_fields() -> None:
    assert messages.text("fr", "subscribed").startswith("Subscribed")
    assert messages.text(None, "items", n=3) == "3 item(s)"
    assert (
        messages.text("de", "unknown", command="/x", p="/")
        == "Unbekannter Befehl /x. /help zeigt die Liste."
    )
