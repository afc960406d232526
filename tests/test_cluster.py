import dataclasses

from bot import cluster
from bot.models import Article

TEXT = (
    "Russia has moved about 100,000 soldiers close to the border with Ukraine, "
    "according to US officials, who warned of an invasion within weeks."
)


def art(id: str, title: str, text: str = TEXT) -> Article:
    return Article(id, title, text, "en")


def test_same_story_from_two_sources_is_one_story() -> None:
    first = art("a", "Russia masses 100,000 troops near Ukraine border")
    second = art("b", "Russia masses 100,000 troops near Ukrainian border, US says")
    assert cluster.assign([first, second], []) == {"a": "a", "b": "a"}


def test_near_duplicate_text_with_another_title_joins_the_story() -> None:
    known = [(art("old", "Troop build-up worries NATO"), "old")]
    rewritten = art("new", "Tensions rise", TEXT.replace("about", "around"))
    assert cluster.assign([rewritten], known) == {"new": "old"}


def test_different_events_stay_apart() -> None:
    a = art("a", "Russia masses troops near Ukraine border")
    b = art(
        "b", "Bomb kills 12 in Baghdad market", "A car bomb exploded in a busy market in Baghdad."
    )
    assert cluster.assign([a, b], []) == {"a": "a", "b": "b"}


def test_changed_article_is_not_matched_with_its_old_version() -> None:
    old = art("a", "Russia masses troops near Ukraine border")
    assert cluster.assign([old], [(old, "a")]) == {"a": "a"}


def test_other_agency_same_event_is_one_story_and_another_event_there_is_not() -> None:
    reuters = Article(
        "r1",
        "Russia masses troops near Ukraine border, minister says",
        "KYIV, May 3 (Reuters) - Russia has moved some 12,000 troops to the Belgorod region, "
        "Defence Minister Oleksii Reznikov said on Tuesday.",
        "en",
        published="2026-05-03T08:00:00+00:00",
    )
    ap = Article(
        "p1",
        "Kyiv warns of build-up across the frontier",
        "Ukraine's defence chief Oleksii Reznikov told lawmakers that 12.000 Russian soldiers "
        "had arrived in Belgorod within a week.",
        "en",
        published="2026-05-03T11:30:00+00:00",
    )
    later = Article(
        "x1",
        "Drone strike hits fuel depot in Belgorod",
        "A drone hit a fuel depot in Belgorod overnight, the regional governor said; "
        "no one was hurt.",
        "en",
        published="2026-05-05T02:00:00+00:00",
    )
    stories = cluster.assign([ap, later], [(reuters, "r1")])
    assert stories == {"p1": "r1", "x1": "x1"}


def test_undated_reports_about_one_country_stay_apart() -> None:
    # The fault this guards: ten different alert-worthy drops into articles/ (no publication
    # time) gave eight alerts, because reports sharing a country and a few nouns were merged.
    offensive = Article(
        "d1",
        "Syrische Armee rückt auf Idlib vor",
        "Damaskus – Die syrische Armee ist mit Unterstützung der russischen Luftwaffe weiter "
        "auf die Rebellenhochburg Idlib vorgerückt. Die Regierung in Damaskus sprach von "
        "Erfolgen, Aktivisten meldeten Tote unter Zivilisten.",
        "de",
    )
    talks = Article(
        "d2",
        "Syrien-Gespräche in Genf vertagt",
        "Genf – Die Gespräche der Vereinten Nationen über Syrien sind vertagt worden. Die "
        "Regierung in Damaskus und die Opposition konnten sich nicht auf eine Tagesordnung "
        "einigen, sagte der UN-Sondergesandte.",
        "de",
    )
    assert cluster.assign([talks], [(offensive, "d1")]) == {"d2": "d2"}


# Three reports of our own: one event from two agencies and in German, and another event in
# the same city on the same day (a different place, victims and cause).
LYON_REUTERS = Article(
    "lyon-r",
    "Gas blast rips through Lyon apartment block, four dead",
    "PARIS, March 4 (Reuters) - A gas explosion tore through a six-storey apartment block in "
    "the Lyon suburb of Villeurbanne early on Wednesday, killing four people and injuring 17, "
    "the prefecture said. Firefighters were searching the rubble for two missing residents.",
    "en",
    agency="Reuters",
    published="2026-03-04T06:30:00+00:00",
)
LYON_AP = Article(
    "lyon-ap",
    "Explosion collapses building near Lyon; rescuers dig for survivors",
    "LYON, France (AP) — Rescuers in Villeurbanne dug through concrete on Wednesday after a "
    "suspected gas leak caused a blast that brought down part of a residential building. Four "
    "people died and 17 were hurt, officials said, and two residents remain unaccounted for.",
    "en",
    agency="AP",
    published="2026-03-04T08:10:00+00:00",
)
LYON_DPA = Article(
    "lyon-dpa",
    "Vier Tote bei Gasexplosion in Wohnhaus bei Lyon",
    "Paris (dpa) - Bei einer Gasexplosion in einem Wohnhaus in Villeurbanne bei Lyon sind am "
    "Mittwochmorgen vier Menschen ums Leben gekommen. 17 Bewohner wurden verletzt, zwei werden "
    "noch vermisst, teilte die Präfektur mit. Die Feuerwehr durchsucht die Trümmer.",
    "de",
    agency="dpa",
    published="2026-03-04T09:00:00+00:00",
)
LYON_TRAM = Article(
    "lyon-tram",
    "Tram derails in central Lyon, 9 injured",
    "LYON, France (AP) — A tram jumped the rails and hit a bus shelter on the Presqu'ile in "
    "central Lyon on Wednesday afternoon, injuring nine passengers, the transport operator "
    "TCL said. The driver was taken to hospital in shock and the line was closed until evening.",
    "en",
    agency="AP",
    published="2026-03-04T15:20:00+00:00",
)


def test_a_second_agency_wording_the_same_event_otherwise_joins_its_story() -> None:
    assert cluster.assign([LYON_AP], [(LYON_REUTERS, "lyon-r")]) == {"lyon-ap": "lyon-r"}


def test_the_same_event_reported_in_german_joins_the_english_story() -> None:
    assert cluster.assign([LYON_DPA], [(LYON_REUTERS, "lyon-r")]) == {"lyon-dpa": "lyon-r"}


def test_another_event_in_the_same_city_that_day_stays_its_own_story() -> None:
    known = [(LYON_REUTERS, "lyon-r"), (LYON_AP, "lyon-r"), (LYON_DPA, "lyon-r")]
    assert cluster.assign([LYON_TRAM], known) == {"lyon-tram": "lyon-tram"}


def test_the_same_reports_a_day_and_more_apart_are_two_events() -> None:
    later = dataclasses.replace(LYON_AP, published="2026-03-05T09:00:00+00:00")
    assert not cluster.same_event(cluster.signature(LYON_REUTERS), cluster.signature(later))


def test_numbers_are_one_number_however_a_language_writes_them() -> None:
    def figures(text: str, lang: str) -> frozenset[str]:
        return cluster.numbers(Article("n", "", text, lang))

    assert figures("about 12,000 people fled", "en") == {"12000"}
    assert figures("Twelve thousand people fled", "en") == {"12000"}
    assert figures("rund 12.000 Menschen flohen", "de") == {"12000"}
    assert figures("zwölftausend Menschen flohen", "de") == {"12000"}
    assert figures("je dreihundert Gefangene", "de") == {"300"}
    assert figures("twenty-one soldiers", "en") == {"21"}
    # Decimals keep their value in both conventions; small counts say nothing specific.
    assert figures("Löhne steigen um 5,8 Prozent für vier Jahre", "de") == {"5.8"}
    assert figures("wages rise 5.8% over four years", "en") == {"5.8"}
    assert figures("90 Milliarden Euro", "de") == figures("90 billion euros", "en")
    assert figures("90 billion euros", "en") == {"90000000000"}
    # Years, dates in a dateline and clock times are no event figures.
    assert figures("ANKARA, Nov 3 (Reuters) - in 2026 at 18 Uhr", "de") == frozenset()


def test_names_are_actors_and_places_not_german_nouns_or_the_bureau() -> None:
    signature = cluster.signature(LYON_DPA)
    stems = set().union(*signature.names)
    assert {"vileur", "lyon"} <= stems  # stems of "Villeurbanne" and "Lyon"
    # "Gasexplosion", "Wohnhaus", "Menschen", "Feuerwehr" are nouns; Paris is the dateline.
    assert not stems & {"gasexp", "vohnha", "mensch", "feuerv", "paris"}
    hezbollah = cluster.names(Article("h", "", "Kämpfer der Hisbollah feuerten", "de"))
    assert set().union(*hezbollah) & set().union(
        *cluster.names(Article("e", "", "fighters of Hezbollah fired", "en"))
    )


def test_a_key_shared_by_too_many_articles_stops_growing_and_the_rare_key_still_finds() -> None:
    stories = cluster.Stories()
    crowd = [
        Article(f"c{i}", f"Council in Lyon meets on item {i}", "The council in Lyon met.", "en")
        for i in range(cluster._COMMON_KEY + 50)
    ]
    for article in crowd:
        stories.add(article, article.id)
    stories.add(LYON_REUTERS, "lyon-r")
    # "lyon" is now in more articles than the cap: its list stopped growing at the cap.
    assert len(stories._postings["n:lyon"]) == cluster._COMMON_KEY + 1
    # Skipping it, the rarer keys (Villeurbanne, 17) still lead to the story.
    assert stories.find(LYON_AP) == "lyon-r"
    assert stories.find(LYON_TRAM) is None
