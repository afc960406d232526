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
