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
