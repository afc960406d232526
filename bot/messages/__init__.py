"""The message catalogue: every user-facing phrase, one module per language."""

from __future__ import annotations

from bot.messages import de, en

CATALOGUES: dict[str, dict[str, str]] = {"en": en.MESSAGES, "de": de.MESSAGES}
LANGUAGES = tuple(CATALOGUES)


def text(lang: str | None, key: str, /, **fields: object) -> str:
    """The phrase `key` in `lang` (English when that language lacks it), with `fields` filled in."""
    catalogue = CATALOGUES.get(lang or "en", en.MESSAGES)
    template = catalogue.get(key) or en.MESSAGES[key]
    return template.format(**fields) if fields else template
