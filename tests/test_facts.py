"""Tests for digest facts: summary, who with the full role, where once per lemma."""

from __future__ import annotations

from pathlib import Path

from bot.facts import Facts, facts
from bot.models import Article

SEED = Path(__file__).resolve().parents[1] / "articles" / "nato-russland-rat-2022-01.txt"


def seed() -> Article:
    text = SEED.read_text(encoding="utf-8").strip()
    return Article(id="seed", title="", text=text, lang="de", published="2022-01")


def test_facts_of_seed_article() -> None:
    got = facts(seed())
    assert isinstance(got, Facts)
    assert "Brüssel" in got.summary
    assert any("Andreas Michaelis" in w for w in got.who)
    assert any("Julianne Smith" in w for w in got.who)
    assert "Brüssel" in got.where


def test_facts_english_item() -> None:
    article = Article(
        id="e1",
        title="Minister visits Kabul",
        text="Foreign Minister John Carter arrived in Kabul on Monday for talks with officials.",
        lang="en",
    )
    got = facts(article)
    assert got.summary.startswith("Foreign Minister John Carter")
    assert any("John Carter" in w for w in got.who)
    assert "Kabul" in got.where


def test_who_keeps_the_full_role() -> None:
    article = Article(
        id="s1",
        title="Sudan army chief vows to fight on",
        text="KHARTOUM (Reuters) - Sudan's army chief Abdel Fattah al-Burhan said on Tuesday "
        "the army would fight on until the paramilitaries were defeated.",
        lang="en",
    )
    assert facts(article).who == ("army chief Abdel Fattah al-Burhan",)


def test_where_lists_each_place_once_whatever_its_case() -> None:
    article = Article(
        id="d1",
        title="",
        text="Damaskus – In Syrien gehen die Kämpfe weiter. Syriens Armee griff Aleppo an. "
        "Die Lage in Syrien bleibt angespannt, sagte Außenminister Heiko Maas in Berlin.",
        lang="de",
    )
    got = facts(article)
    assert got.where[0] == "Syrien"
    assert "Syriens" not in got.where and {"Aleppo", "Berlin"} <= set(got.where)
    assert got.who == ("Außenminister Heiko Maas",)


def test_english_titles_are_kept_whole() -> None:
    """ "Nato Secretary General Mark Rutte" came out as "General Mark Rutte"."""
    text = (
        "Nato Secretary General Mark Rutte condemned the attack on Tuesday. Defence Minister "
        "Rustem Umerov said the troops would hold their positions. Deputy Foreign Minister "
        "Alexander Grushko warned the West. On Monday President Joe Biden spoke."
    )
    who = facts(Article("t1", "Talks", text, "en")).who
    assert who[:4] == (
        "Nato Secretary General Mark Rutte",
        "Defence Minister Rustem Umerov",
        "Deputy Foreign Minister Alexander Grushko",
        "President Joe Biden",
    )
