"""Language identification for articles and questions that don't declare a language."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_LANGUAGES: tuple[str, ...] = ("de", "en")


def detect(text: str, candidates: Sequence[str] = DEFAULT_LANGUAGES, default: str = "en") -> str:
    """The most likely language of `text` among `candidates` (ISO 639-1), else `default`."""
    # simplemma looks words up in its per-language lemma dictionaries; a sample of the text
    # is as telling as all of it and keeps long articles cheap.
    import simplemma  # deferred: most articles declare their language, and it costs 40 ms

    sample = text[:2000]
    if not sample.strip():
        return default
    ranked = simplemma.langdetect(sample, lang=tuple(candidates))
    best, share = ranked[0]
    return default if best == "unk" or share <= 0 else str(best)
