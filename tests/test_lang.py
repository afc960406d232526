import json

import pytest

from bot import lang
from bot.lang import detect

from .conftest import SHARED

CORPUS = SHARED / "corpus" / "articles.jsonl"


def test_function_words_decide_clear_german_and_english() -> None:
    german = "Die Regierung hat am Montag mitgeteilt, dass der Angriff auf die Stadt nicht endet."
    english = "The government said on Monday that the attack on the city has not ended yet."
    assert lang._clear_case(german, ("de", "en")) == "de" and detect(german) == "de"
    assert lang._clear_case(english, ("de", "en")) == "en" and detect(english) == "en"


def test_unclear_texts_and_other_languages_go_to_the_dictionaries() -> None:
    # A title of names and nouns has too few function words: the dictionaries decide.
    headline = "Bundesregierung Haushaltsstreit Koalition"
    assert lang._clear_case(headline, ("de", "en")) is None
    assert detect(headline) == "de"
    # French is in neither list: the shortcut stays out when it is a candidate.
    french = "Le gouvernement a annoncé que les combats dans la ville ont repris."
    assert lang._clear_case(french, ("de", "en", "fr")) is None
    assert detect(french, ("de", "en", "fr")) == "fr"
    assert detect("   ") == "en" and detect("", default="de") == "de"


@pytest.mark.skipif(not CORPUS.is_file(), reason="shared corpus absent")
def test_the_sample_feeds_use_gives_each_corpus_article_its_language() -> None:
    # What feeds.parse samples for an undeclared language: the title and 200 characters.
    records = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    wrong = [
        r["id"]
        for r in records
        if detect(f"{r['title'] or r['text'][:80]}\n{r['text'][:200]}") != r["lang"]
    ]
    assert len(records) > 2000 and wrong == []
