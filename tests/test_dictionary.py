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
