import re

import pytest

from bot.extract import lang_data, languages
from bot.question import TYPES, analyse, asked_place_kind, question_lang, unit_classes


@pytest.mark.parametrize(
    ("question", "qtype"),
    [
        ("Who attends from Germany?", "person"),
        ("How long did the struggle last?", "duration"),
        ("Wie lange dauerte der Besuch?", "duration"),
        ("How old is the soldier?", "age"),
        ("Wie alt ist der Präsident?", "age"),
        ("What sentence did the court give him?", "penalty"),
        ("Welche Haftstrafe droht ihm?", "penalty"),
        ("How much money was promised?", "money"),
        ("Wie viel Prozent lehnen das Abkommen ab?", "percent"),
        ("According to UN estimates, how many civilians were killed?", "number"),
        ("Which party is he the candidate of?", "org"),
        ("Welche Zeitung berichtete?", "org"),
        ("In which Moroccan port city was he arrested?", "place"),
        ("In what year was he born?", "time"),
        ("What is the name of the judge who refused?", "person"),
        ("Wie heißt der Richter?", "person"),
        # A preposition or a hedge before the question word does not change what is asked.
        ("In wie vielen Bundesstaaten ist das erlaubt?", "number"),
        ("From how many nations are the chiefs?", "number"),
        ("Roughly how many animals did they keep?", "number"),
        ("Bis wann sollen die Zölle fallen?", "time"),
        # What the verb or the noun after "what" asks for: a measure, a penalty, a period.
        ("How high above the river does the road run?", "number"),
        ("What did the number of victims rise to?", "number"),
        ("What was the captain sentenced to?", "penalty"),
        ("Wozu wurde der Kapitän verurteilt?", "penalty"),
        ("Over what period will the plan run?", "duration"),
        ("In welchem Zeitraum soll der Plan laufen?", "duration"),
        ("In welcher Preisspanne sollen die Aktien angeboten werden?", "money"),
    ],
)
def test_question_type_from_pattern_or_head_noun(question: str, qtype: str) -> None:
    assert analyse(question).qtype == qtype


def test_every_language_pattern_names_a_row_of_the_type_table() -> None:
    for lang in languages():
        for _, kind in lang_data(lang).qtypes:
            assert kind in TYPES, (lang, kind)


def test_words_of_the_pattern_and_question_words_are_no_keywords() -> None:
    q = analyse("How long did Clayton Lockett's death struggle last?")
    surfaces = [g.surface for g in q.groups]
    assert "long" not in surfaces and "How" not in surfaces
    assert "Lockett" in surfaces  # the possessive is its noun


def test_english_words_cross_to_german_through_the_dictionary() -> None:
    q = analyse("Who was arrested at the airport?")
    keys = set().union(*(g.keys for g in q.groups))
    assert {"festnahme", "verhaften"} & keys or any(re.match("festnehm", k) for k in keys)


def test_institution_words_are_concepts_not_names() -> None:
    q = analyse("How old is the National Guard soldier?")
    assert not any(g.entity for g in q.groups if g.surface in ("National", "Guard"))


def test_head_noun_is_kept_light() -> None:
    q = analyse("Which newspaper reported the figures?")
    assert q.head is not None and q.head.surface == "newspaper"


def test_language_and_units() -> None:
    assert question_lang("Wer nimmt teil?") == "de"
    assert question_lang("Who attends?") == "en"
    assert unit_classes("Jahren") == {"duration"}
    assert "money" in unit_classes("US-Dollar")
    assert "age" in unit_classes("jährige")


@pytest.mark.parametrize(
    ("noun", "kind"),
    [("Hafenstadt", "city"), ("town", "city"), ("Bundesland", "region"), ("country", "country")],
)
def test_place_head_nouns_name_the_kind_of_place_they_ask_for(noun: str, kind: str) -> None:
    assert asked_place_kind(noun) == kind


def test_how_much_something_cost_asks_for_money() -> None:
    assert analyse("Wie viel hat der Bau der Brücke gekostet?").qtype == "money"
    assert analyse("How much did the bridge cost?").qtype == "money"


def test_an_acronym_of_a_common_noun_crosses_languages_through_the_hand_lexicon() -> None:
    q = analyse("Which MP said the elections must wait?")
    mp = next(g for g in q.groups if g.surface == "MP")
    assert {"abgeordneter", "abgeordnete"} & mp.keys


def test_a_lookahead_pattern_keeps_the_words_it_looks_past() -> None:
    q = analyse("What was Schettino sentenced to?")
    assert q.qtype == "penalty" and "Schettino" in [g.surface for g in q.groups]


@pytest.mark.parametrize(
    ("question", "unit"),
    [
        ("How many jailed opposition leaders were pardoned?", "opposition leaders"),
        ("How many right-wing violent crimes were registered?", "crimes"),
        ("How many soldiers died?", "soldiers"),
        ("How many people besides the bombers died?", "people"),
        ("Wie viele weitere Kabinettsmitglieder treten zurück?", "Kabinettsmitglieder"),
    ],
)
def test_how_many_counts_the_noun_past_its_adjectives(question: str, unit: str) -> None:
    q = analyse(question)
    assert q.unit is not None and q.unit.surface == unit


def test_use_crosses_to_the_german_verbs_for_using_a_weapon() -> None:
    q = analyse("When was the gas used?")
    used = next(g for g in q.groups if g.surface == "used")
    assert {"vervenden", "einsetzen"} <= used.keys  # keys are skeletons (w -> v)
