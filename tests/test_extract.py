from pathlib import Path

from bot.extract import analyse, fold, place_kind, skeleton
from bot.models import Article

SEED = Path(__file__).resolve().parents[1] / "articles" / "nato-russland-rat-2022-01.txt"


def seed() -> Article:
    text = SEED.read_text(encoding="utf-8").strip()
    return Article(id="seed", title="", text=text, lang="de", published="2022-01")


def kinds(text: str, lang: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for span in analyse(text, lang).spans:
        out.setdefault(span.kind, []).append(span.text)
    return out


def test_fold_and_skeleton_merge_transliterations() -> None:
    assert fold("Österreich") == "osterreich"
    assert skeleton("Lawrow") == skeleton("Lavrov")
    assert skeleton("Netanjahu") == skeleton("Netanyahu")


def test_person_with_role_german() -> None:
    spans = analyse("Für Polen nimmt Staatssekretär Jan Nowak an dem Treffen teil.", "de").spans
    person = next(s for s in spans if s.kind == "person")
    assert (person.text, person.role) == ("Jan Nowak", "Staatssekretär")


def test_person_with_apposition_role() -> None:
    text = "Das sagte die Botschafterin bei der UNO, Maria Lopez."
    person = next(s for s in analyse(text, "de").spans if s.kind == "person")
    assert person.text == "Maria Lopez"
    assert person.role is not None and "Botschafterin" in person.role


def test_numbers_with_units_both_languages() -> None:
    assert "100.000 Soldaten" in kinds("Dort stehen rund 100.000 Soldaten bereit.", "de")["number"]
    assert "3,000 troops" in kinds("Moscow moved 3,000 troops to the border.", "en")["number"]


def test_places_and_times() -> None:
    got = kinds("Am Montag trafen sich die Minister in Wien und danach in Genf.", "de")
    assert {"Wien", "Genf"} <= set(got["place"])
    assert any("Montag" in t for t in got["time"])
    got_en = kinds("The ministers met in Geneva on Tuesday, 12 March.", "en")
    assert "Geneva" in got_en["place"]
    assert any("Tuesday" in t for t in got_en["time"])


def test_list_of_places() -> None:
    got = kinds("Die Übungen finden in den Regionen Tula, Kursk und Orjol statt.", "de")
    assert "Tula, Kursk und Orjol" in got["list"]


def test_acronym_heading_a_role_is_an_organisation() -> None:
    got = kinds("Dahinter liegt SPÖ-Kandidat Rudolf Hundstorfer mit zehn Punkten.", "de")
    assert "SPÖ" in got["org"]
    assert "Rudolf Hundstorfer" in got["person"]


def test_number_units_skip_adjectives_and_stop_at_punctuation() -> None:
    spans = analyse(
        "Bei 101 entsprechenden Straftaten entfielen 24 auf Sachsen (17), 80 weitere.", "de"
    )
    units = {s.text: s.unit for s in spans.spans if s.kind == "number"}
    assert units["101 entsprechenden Straftaten"] == "Straftaten"
    assert units["17"] is None


def test_german_number_word_compounds_are_numbers_with_their_unit() -> None:
    sent = analyse(
        "Obama bricht zu einem dreitägigen Besuch auf, ihm drohte eine fünfjährige Haft.", "de"
    )
    numbers = [(s.text, s.unit) for s in sent.spans if s.kind == "number"]
    assert numbers == [("dreitägigen", "tagigen"), ("fünfjährige", "jahrige")]


def test_a_headline_colon_ends_the_role_phrase() -> None:
    sent = analyse(
        "US-Vertreter: Xi wird die Einführung eines Emissionshandels bekannt geben.", "de"
    )
    assert [(s.kind, s.text, s.role) for s in sent.spans if s.kind == "person"] == [
        ("person", "Xi", None)
    ]
    kept = analyse("Für Deutschland werde Staatssekretär Andreas Michaelis teilnehmen.", "de")
    assert [s.role for s in kept.spans if s.kind == "person"] == ["Staatssekretär"]


def test_a_reported_clause_before_a_comma_is_no_role_in_apposition() -> None:
    report = analyse("Ein US-Vertreter sagte, Xi wolle am Freitag ein System verkünden.", "de")
    assert [(s.text, s.role) for s in report.spans if s.kind == "person"] == [("Xi", None)]
    apposition = analyse("Die US-Botschafterin beim Bündnis, Julianne Smith, sagte das.", "de")
    assert [(s.text, s.role) for s in apposition.spans if s.kind == "person"] == [
        ("Julianne Smith", "US-Botschafterin beim Bündnis")
    ]


def test_a_place_the_gazetteer_lacks_is_a_place_after_a_bare_preposition_or_place_noun() -> None:
    found = kinds(
        "Am Donnerstag hat in Florenz der Prozess begonnen. Die Gespräche laufen in "
        "Vestra-Stadt, der Mann wurde in der Hafenstadt Mohammedia festgenommen.",
        "de",
    )
    assert {"Florenz", "Vestra-Stadt", "Mohammedia"} <= set(found.get("place", []))
    # Common nouns after "in" stay no place: inflected, abstract, or a compound of a noun.
    found = kinds("Er ist in Haft, in Lebensgefahr und in Ordnung, in Städten wie dieser.", "de")
    assert "place" not in found


def test_a_compound_of_a_direction_and_a_country_is_a_region() -> None:
    assert place_kind("Polen") == "country"
    assert place_kind("Nordostpolen") == "region"
    assert place_kind("Südfrankreich") == "region"
    assert place_kind("Mohammedia") is None
