"""Tests for the country list (pycountry, English and German) and the main country of a story."""

from __future__ import annotations

from bot import regions
from bot.models import Article


def test_every_state_in_both_languages() -> None:
    table = regions.countries()
    assert len(table) >= 249
    assert (table["AM"].en, table["AM"].de) == ("Armenia", "Armenien")
    assert (table["AZ"].en, table["AZ"].de) == ("Azerbaijan", "Aserbaidschan")
    assert (table["SY"].en, table["SY"].de) == ("Syria", "Syrien")
    assert (table["RU"].en, table["RU"].de) == ("Russia", "Russland")
    assert regions.label("Syria", "de") == "Syrien"
    assert regions.label("Middle East", "de") == "Middle East"  # not a state: as given


def test_mentions_in_german_and_english_with_inflection() -> None:
    text = "Armenien und Aserbaidschan; Syriens Armee; Russland. Britain and the U.S. too."
    assert regions.mentions(text) == ["AM", "AZ", "SY", "RU", "GB", "US"]


def test_a_passing_mention_does_not_make_the_heading() -> None:
    # The fault: "== Russia ==" for an Armenia–Azerbaijan story because Russia is named once.
    article = Article(
        "a1",
        "Armenia and Azerbaijan trade fire on their border",
        "YEREVAN (Reuters) - Armenian and Azerbaijani troops exchanged fire on Monday, the "
        "Armenian defence ministry said. Azerbaijan denied starting the shooting. Russia, "
        "which keeps peacekeepers in the region, called for calm.",
        "en",
    )
    assert regions.heading([article]) == "Armenia"
    assert regions.heading([], fallback="armed conflict") == "armed conflict"


def test_resolve_understands_what_users_type() -> None:
    assert regions.resolve("Syrien") == "Syria" and regions.resolve("syria") == "Syria"
    assert regions.resolve("usa") == "United States" and regions.resolve("U.S.") == "United States"
    assert regions.resolve("Russland") == "Russia" and regions.resolve("Elfenbeinküste") == (
        "Ivory Coast"
    )
    assert regions.resolve("Bergkarabach") == "Nagorno-Karabakh"
    assert regions.resolve("Nahost") == "Middle East"
    assert regions.resolve("Ukriane") is None and regions.resolve("Narnia") is None
    assert regions.resolve("") is None
