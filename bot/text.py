"""Plain-text helpers shared by extraction and retrieval: the project's one sentence splitter."""

from __future__ import annotations

import re

import simplemma

_BACKSLASH_BREAK = re.compile(r"(?<=\S)\\(?=\S)")
_DASH_DATELINE = re.compile(r"^\s*(?:[A-ZÄÖÜ][\w./ ]{1,40}?(?:\([^)]{1,20}\))?\s*[–—-]\s+)")


def sentences(text: str, lang: str | None = None) -> list[str]:
    """The sentences of `text` by paragraph, with wire datelines ("Bamako – ") removed."""
    result: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        # Some wire archives mark line breaks with a backslash ("President Vladimir\\Putin").
        paragraph = _BACKSLASH_BREAK.sub(" ", paragraph).strip()
        if not paragraph:
            continue
        for sent in simplemma.split_sentences(
            paragraph, lang=lang if lang in ("de", "en") else None
        ):
            sent = sent.strip()
            if sent:
                result.append(sent)
    # "Bamako – Nahe der Grenze ..." and "date 2022-01 Brüssel (dpa) – Vertreter ...": the
    # dateline names the place of filing, not the content; keep the rest.
    cleaned = []
    for sent in result:
        if sent.startswith("date "):
            sent = re.sub(r"^date \S+\s+", "", sent)
        stripped = _DASH_DATELINE.sub("", sent, count=1)
        cleaned.append(stripped if len(stripped) > 20 else sent)
    return cleaned
