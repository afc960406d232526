from pathlib import Path

from bot.extract import analyse, fold, sentences, skeleton
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


def test_sentences_split_and_drop_datelines() -> None:
    got = sentences("Bamako – Soldaten zerstörten zwei Lager. Dr. Meier sagte das am Montag.", "de")
    assert got[0] == "Soldaten zerstörten zwei Lager."
    assert len(got) == 2


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
