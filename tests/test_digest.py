"""Tests for digest composition: one item and one heading per story, on a hand-written mixed day."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import digest
from bot.chat.render import plain
from bot.classify import classify
from bot.models import Article, Level, Verdict

NOW = datetime(2026, 5, 4, 18, tzinfo=UTC)


def art(id: str, title: str, text: str, lang: str, agency: str, published: str) -> Article:
    return Article(id, title, text, lang, published=published, agency=agency)


BORDER_REUTERS = art(
    "am-reuters",
    "Armenia and Azerbaijan troops trade fire on border, two soldiers killed",
    "YEREVAN, May 4 (Reuters) - Armenian and Azerbaijani troops exchanged artillery fire "
    "near the village of Sotk on Monday, killing two Armenian soldiers, the Armenian defence "
    "ministry said. Azerbaijan said its army had returned fire after an attack on its "
    "positions. Russia, which keeps peacekeepers in the region, called for restraint.",
    "en",
    "Reuters",
    "2026-05-04T07:10:00+00:00",
)
BORDER_DPA = art(
    "am-dpa",
    "Gefechte an der Grenze zwischen Armenien und Aserbaidschan",
    "Eriwan (dpa) – An der Grenze zwischen Armenien und Aserbaidschan haben sich Soldaten "
    "beider Länder am Montag Gefechte mit Artillerie geliefert. Nach Angaben des armenischen "
    "Verteidigungsministeriums wurden bei Sotk zwei armenische Soldaten getötet. Aserbaidschan "
    "sprach von einem Angriff auf seine Stellungen.",
    "de",
    "dpa",
    "2026-05-04T09:40:00+00:00",
)
ALEPPO = art(
    "sy-afp",
    "Luftangriffe auf Aleppo: Dutzende Tote",
    "Damaskus (AFP) – Bei Luftangriffen auf Aleppo sind nach Angaben von Aktivisten dutzende "
    "Zivilisten getötet worden. Syriens Armee setzte ihre Offensive gegen die Rebellen fort. "
    "Die Lage in Syrien bleibt nach Angaben der Vereinten Nationen angespannt; in Syrien "
    "fliehen Tausende vor den Kämpfen.",
    "de",
    "AFP",
    "2026-05-04T06:00:00+00:00",
)
BUS_BOMB = art(
    "bus-ap",
    "Suicide bomber kills 14 on crowded bus, militants claim attack",
    "A suicide bomber blew himself up on a crowded bus on Monday, killing 14 people, police "
    "said. A militant group claimed the terror attack in a statement.",
    "en",
    "AP",
    "2026-05-04T12:00:00+00:00",
)
FOOTBALL = art(
    "sport",
    "Late goal settles the derby",
    "A late goal settled the derby on Monday; the home side's attack finally broke through.",
    "en",
    "AP",
    "2026-05-04T20:00:00+00:00",
)


def test_a_mixed_day_reads_right_one_heading_per_story() -> None:
    day = [BORDER_REUTERS, ALEPPO, BUS_BOMB, BORDER_DPA, FOOTBALL]
    entries = [(a, classify(a)) for a in day]
    assert classify(FOOTBALL).level is Level.IGNORE
    assert all(v.level is not Level.IGNORE for a, v in entries if a is not FOOTBALL)
    built = digest.build(entries, now=NOW, lang="en")
    groups = {heading: [i.article_id for i in items] for heading, items in built.groups()}
    # The two wire reports of the border fighting are one story under one heading, not
    # "Russia" (named once) for one and "armed conflict" for the other.
    border = [i for i in built.items if i.article_id in ("am-reuters", "am-dpa")]
    assert len(border) == 1
    assert border[0].topic == "Armenia"
    assert set(border[0].also_reported_by) | {border[0].source} == {"Reuters", "dpa"}
    assert groups["Syria"] == ["sy-afp"]
    # No country named: the kind of conflict is the heading, and only this story is under it.
    [kind] = [t for t in classify(BUS_BOMB).topics if t in digest.CONFLICT_TYPES]
    assert groups[kind] == ["bus-ap"]
    assert "Russia" not in groups
    assert len(built.items) == 3
    [aleppo] = [i for i in built.items if i.article_id == "sy-afp"]
    assert "Syrien" in aleppo.where and "Syriens" not in aleppo.where
    text = plain(built)
    assert text.count("Armenia") >= 1 and "Russia ==" not in text


def test_headings_follow_the_digest_language() -> None:
    built = digest.build([(ALEPPO, classify(ALEPPO))], now=NOW, lang="de")
    assert [heading for heading, _ in built.groups()] == ["Syrien"]


def test_filters_match_whole_words_with_their_inflections() -> None:
    from bot.models import Preferences

    def passes(text: str, **prefs: tuple[str, ...]) -> bool:
        article = Article("n1", "Lage", text, "de")
        verdict = Verdict("n1", True, 0.9, (), Level.ALERT, ())
        return digest.wants(Preferences(**prefs), article, verdict)  # type: ignore[arg-type]

    assert not passes("Kämpfe in Nigeria.", countries=("Niger",))
    assert passes("Unruhen in Niger.", countries=("Niger",))
    assert passes("Die Lage Syriens.", countries=("Syrien",))
    # Either language's name finds either language's text.
    assert passes("Air strikes hit Idlib in Syria.", countries=("Syrien",))
    assert passes("Luftangriffe in Syrien.", countries=("Syria",))
    assert not passes("Luftangriffe in Syrien.", countries=("Iraq",))
    assert passes("Der Ukraine-Krieg.", include=("Ukraine",))
    assert not passes("Der Ukraine-Krieg.", exclude=("Ukraine",))


def test_a_country_filter_in_german_matches_the_english_topic() -> None:
    from bot.models import Preferences

    article = Article("n2", "Fighting near Kupiansk", "Shelling went on overnight.", "en")
    verdict = Verdict("n2", True, 0.9, (), Level.ALERT, ("Russia",))
    assert digest.wants(Preferences(countries=("Russland",)), article, verdict)
    assert not digest.wants(Preferences(countries=("Frankreich",)), article, verdict)


def test_a_feed_is_shown_by_its_site_never_its_credentials() -> None:
    """A config feed's `?apikey=` and `user:password@` reached every chat in the alert's source."""
    article = Article(
        "feed:1",
        "Air strikes hit Idlib",
        "Air strikes hit rebel-held Idlib.",
        "en",
        source="https://reader:hunter2@www.example-news.org:8443/world.rss?apikey=TOPSECRET",
    )
    assert digest.source_of(article) == "example-news.org"
    shown = digest.item(article, classify(article))
    assert shown.source == "example-news.org"
    assert "TOPSECRET" not in repr(shown) and "hunter2" not in repr(shown)


def test_files_keep_their_name_and_agencies_win() -> None:
    assert digest.source_of(Article("a", "t", "x", "en", source="/srv/articles/kabul.txt")) == (
        "kabul.txt"
    )
    agency = Article("a", "t", "x", "en", source="https://example.org/rss", agency="Reuters")
    assert digest.source_of(agency) == "Reuters"


def test_published_is_shown_as_a_date() -> None:
    assert digest.published_date("2026-11-30T10:00:00+00:00") == "2026-11-30"
    assert digest.published_date("2026-11-30") == "2026-11-30"
    assert digest.published_date(None) is None
    assert digest.published_date("yesterday") == "yesterday"
