from pathlib import Path

import pytest

from bot import dictionary
from bot.extract import key_of


def test_translates_lemma_keys_both_ways() -> None:
    assert "arest" in dictionary.translate(key_of("Festnahme", "de"), "de", "en")
    assert key_of("Regierung", "de") in dictionary.translate(key_of("government", "en"), "en", "de")
    assert key_of("Bürgermeister", "de") in dictionary.translate(key_of("mayor", "en"), "en", "de")


def test_same_or_unknown_language_translates_nothing() -> None:
    assert dictionary.translate("regierung", "de", "de") == ()
    assert dictionary.translate("regierung", "de", "fr") == ()
    assert dictionary.translate("no-such-key-xyz", "en", "de") == ()


def test_ships_both_directions_with_tens_of_thousands_of_words() -> None:
    assert dictionary.size("de", "en") > 100_000
    assert dictionary.size("en", "de") > 100_000


def test_the_lexicon_is_looked_up_in_a_cached_table_with_the_files_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSBOT_CACHE_DIR", str(tmp_path))
    dictionary._table.cache_clear()
    try:
        table = dictionary._table("en", "de")
        (name,) = [p.name for p in tmp_path.iterdir()]
        assert name.startswith("lexicon-en-de-") and name.endswith(".sqlite3")
        source = dict(dictionary._read(dictionary.DATA_DIR / "en-de.tsv.gz"))
        assert len(table) == len(source)
        for key in ("minister", "attend", "soldier", "qqqzzz"):
            assert table.get(key) == source.get(key)
    finally:
        dictionary._table.cache_clear()


def test_an_unwritable_cache_keeps_the_lexicon_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NEWSBOT_CACHE_DIR", str(blocker / "cache"))
    dictionary._table.cache_clear()
    try:
        assert isinstance(dictionary._table("de", "en"), dict)
        assert "government" in dictionary.translate(key_of("Regierung", "de"), "de", "en")
        found = dictionary.first_translated(["qqqzzz", key_of("Regierung", "de")], "de", "en")
        assert found is not None and "government" in found[1]
    finally:
        dictionary._table.cache_clear()


def test_the_first_key_with_translations_is_found_in_one_lookup() -> None:
    # The endings of an unknown compound, longest first: "Einlagenzins" means a rate.
    key = key_of("Einlagenzins", "de")
    heads = [key[start:] for start in range(2, len(key) - 3)]
    first = next(h for h in heads if dictionary.translate(h, "de", "en"))
    assert dictionary.first_translated(heads, "de", "en") == (
        first,
        dictionary.translate(first, "de", "en"),
    )
    assert dictionary.first_translated(["qqqzzz", "xxyyq"], "de", "en") is None
    assert dictionary.first_translated(heads, "de", "de") is None
