from pathlib import Path

import httpx
import pytest

from bot.models import Article
from bot.qa import Index, answer, answer_llm

SEED = Path(__file__).resolve().parents[1] / "articles" / "nato-russland-rat-2022-01.txt"

# Small hand-written articles (not corpus text).
ARMY = Article(
    id="t-de-1",
    title="",
    text=(
        "Manöver an der Grenze. Warschau – Die polnische Armee hat rund 4.500 Soldaten an die "
        "Grenze zu Belarus verlegt. Verteidigungsminister Piotr Zalewski sagte am Dienstag in "
        "Warschau, die Übungen sollen in den Regionen Podlachien, Masowien und Lublin stattfinden. "
        "Die Regierung in Minsk verurteilte die Verlegung scharf."
    ),
    lang="de",
)
STORM = Article(
    id="t-en-1",
    title="Storm hits coastal towns",
    text=(
        "A storm killed 12 people in the coastal town of Portmoor on Friday, "
        "mayor Helen Brody said."
    ),
    lang="en",
)
MARKET = Article(
    id="t-en-2",
    title="Shares rise",
    text="Shares of Acme Corp rose 5 percent on Wednesday after strong quarterly sales.",
    lang="en",
)


def seed() -> Article:
    text = SEED.read_text(encoding="utf-8").strip()
    return Article(id="seed", title="", text=text, lang="de", published="2022-01")


@pytest.fixture(scope="module")
def index() -> Index:
    return Index.build([seed(), ARMY, STORM, MARKET], weights={"seed": 1.0})


@pytest.mark.parametrize(
    ("question", "expected", "lang"),
    [
        ("Who attends from Germany?", "Andreas Michaelis", "en"),
        ("Wer nimmt für Deutschland teil?", "Andreas Michaelis", "de"),
        ("Who is the US ambassador to NATO?", "Julianne Smith", "en"),
        ("How many soldiers has Russia gathered near Ukraine?", "100.000", "en"),
        ("Where do NATO and Russia meet?", "Brüssel", "en"),
        ("Wo finden die OSZE-Gespräche statt?", "Wien", "de"),
        ("When did Sherman lead the US delegation in Geneva?", "Montag", "en"),
    ],
)
def test_seed_questions(index: Index, question: str, expected: str, lang: str) -> None:
    got = answer(question, index, article_id="seed")
    assert got.text is not None and expected in got.text
    assert got.lang == lang
    assert got.sentence is not None and expected in got.sentence
    assert got.sources[0].id == "seed"
    assert 0 < got.confidence <= 1


def test_list_question(index: Index) -> None:
    got = answer("In which regions will the manoeuvres be held?", index, article_id="seed")
    assert got.text is not None
    assert all(r in got.text for r in ("Woronesch", "Belgorod", "Brjansk"))


def test_abstains_when_the_article_does_not_say(index: Index) -> None:
    got = answer("Who attends from France?", index, article_id="seed")
    assert got.text is None
    assert got.lang == "en"


def test_abstains_in_german(index: Index) -> None:
    assert answer("Wer vertritt Japan?", index, article_id="seed").text is None


def test_cross_lingual_german_question_english_article(index: Index) -> None:
    got = answer("Wie viele Menschen wurden getötet?", index, article_id="t-en-1")
    assert got.text is not None and "12" in got.text
    assert got.lang == "de"


def test_english_question_german_article(index: Index) -> None:
    got = answer("How many soldiers did the Polish army move?", index, article_id="t-de-1")
    assert got.text is not None and "4.500" in got.text
    who = answer("Who is the Polish defence minister?", index, article_id="t-de-1")
    assert who.text is not None and "Piotr Zalewski" in who.text


def test_retrieval_across_articles(index: Index) -> None:
    hits = index.search("storm Portmoor", k=2)
    assert hits[0][0].id == "t-en-1"
    got = answer("Where did the storm kill people?", index)
    assert got.text is not None and "Portmoor" in got.text
    assert got.sources[0].id == "t-en-1"
    got_de = answer("Wer ist der polnische Verteidigungsminister?", index)
    assert got_de.text is not None and "Zalewski" in got_de.text
    assert got_de.sources[0].id == "t-de-1"


def test_time_and_summary(index: Index) -> None:
    got = answer("When did the shares of Acme rise?", index, article_id="t-en-2")
    assert got.text is not None and "Wednesday" in got.text
    summary = answer("What happened in Portmoor?", index, article_id="t-en-1")
    assert summary.text is not None and "storm" in summary.text


def test_unknown_article_and_empty_index() -> None:
    empty = Index.build([])
    assert answer("Who attends?", empty).text is None
    assert answer("Who attends?", empty, article_id="nope").text is None


def test_index_add_get_and_replace() -> None:
    idx = Index()
    idx.add(STORM)
    idx.add(STORM)
    assert idx.get("t-en-1") == STORM
    assert len(idx) == 1
    assert idx.get("missing") is None


def _llm(reply: str) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_llm_answer_is_grounded(index: Index) -> None:
    async with _llm('{"answer": "Helen Brody", "sentence": 1}') as client:
        got = await answer_llm(
            "Who is the mayor?", index, client, "http://llm/v1", "m", article_id="t-en-1"
        )
    assert got.text == "Helen Brody"
    assert got.sentence is not None and "Helen Brody" in got.sentence


async def test_llm_ungrounded_answer_falls_back(index: Index) -> None:
    async with _llm('{"answer": "Napoleon", "sentence": 0}') as client:
        got = await answer_llm(
            "Who is the mayor?", index, client, "http://llm/v1", "m", article_id="t-en-1"
        )
    assert got.text is not None and "Helen Brody" in got.text  # the offline answer


async def test_llm_http_error_falls_back(index: Index) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        got = await answer_llm(
            "Who attends from Germany?", index, client, "http://llm/v1", "m", article_id="seed"
        )
    assert got.text is not None and "Michaelis" in got.text


def test_nationality_is_checked_per_phrase() -> None:
    # Georgia occurs in the sentence, but the only president named is the Russian one.
    summit = Article(
        id="t-en-3",
        title="Talks on the border conflict",
        text=(
            "Russian President Oleg Marin said on Monday that Russia will help to settle the "
            "conflict between Georgia and a separatist province."
        ),
        lang="en",
    )
    index = Index.build([summit])
    russian = answer("Who is the Russian president?", index, article_id="t-en-3").text
    assert russian is not None and "Marin" in russian
    # No Georgian president is named: the only right answer is "I don't know".
    assert answer("Wer ist der georgische Präsident?", index, article_id="t-en-3").text is None


def test_store_prefers_the_article_where_question_words_meet() -> None:
    # Short items mention Poland; only one sentence says who attends from Poland.
    fillers = [
        Article(
            id=f"t-en-f{i}",
            title=f"Polish market news {i}",
            text=f"Polish shares rose on day {i}, Poland's bourse said.",
            lang="en",
        )
        for i in range(6)
    ]
    talks = Article(
        id="t-en-talks",
        title="Ministers meet in Vienna",
        text=(
            "Foreign ministers from twelve countries meet in Vienna on Tuesday to discuss the "
            "border dispute and new sanctions against the regime. The talks are expected to last "
            "two days and to end with a joint declaration on the ceasefire. For Poland, deputy "
            "foreign minister Anna Kowalczyk will attend the meeting."
        ),
        lang="en",
    )
    index = Index.build([*fillers, talks])
    got = answer("Who attends from Poland?", index)
    assert got.text is not None and "Kowalczyk" in got.text
    assert got.sources[0].id == "t-en-talks"


def test_inflected_nationality_adjective_in_question() -> None:
    # "sudanesische" is an inflected form of the gazetteer adjective "sudanesisch".
    talks = Article(
        id="t-en-4",
        title="Darfur talks",
        text="Sudanese Foreign Minister Ali Hamid said the talks on Darfur will resume on Monday.",
        lang="en",
    )
    index = Index.build([talks, STORM, MARKET])
    got = answer("Wer ist der sudanesische Außenminister?", index)
    assert got.text is not None and "Ali Hamid" in got.text


def test_acronym_in_a_compound_must_occur_in_the_article() -> None:
    index = Index.build([ARMY, STORM, MARKET])
    assert answer("Wo finden die OSZE-Übungen statt?", index, article_id="t-de-1").text is None


def test_demonym_keeps_its_noun() -> None:
    raid = Article(
        id="t-en-5",
        title="Raid on hideouts",
        text="Pakistani troops attacked militant hideouts near the Afghan border on Sunday.",
        lang="en",
    )
    index = Index.build([raid, STORM, MARKET])
    got = answer("Where did Pakistani troops attack the hideouts?", index, article_id="t-en-5")
    assert got.text == "Afghan border"


TRIAL = Article(
    id="t-de-9",
    title="",
    text=(
        "Ein Gericht in Brüssel hat den 25-jährigen Iliass K. zu fünf Jahren Haft verurteilt. "
        "Der Prozess dauerte 43 Minuten. Laut Rotem Kreuz starben 32 Menschen, 80 weitere wurden "
        "verletzt. Die Familie sollte 200.000 Dollar bekommen. Die Zeitung Danas berichtete."
    ),
    lang="de",
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What sentence did the court give Iliass K.?", "fünf Jahren"),
        ("How old is Iliass K.?", "25"),
        ("How long did the trial last?", "43 Minuten"),
        ("Wie viele Verletzte gab es laut Rotem Kreuz?", "80"),
        ("How many people died according to the Red Cross?", "32"),
        ("How much money should the family get?", "200.000 Dollar"),
        ("Welche Zeitung berichtete?", "Danas"),
    ],
)
def test_typed_reading_inside_the_sentence(question: str, expected: str) -> None:
    index = Index.build([TRIAL, STORM, MARKET])
    got = answer(question, index, article_id="t-de-9")
    assert got.text is not None and expected in got.text and len(got.text) <= 120
    assert got.sentence is not None and expected in got.sentence


def test_overlong_question_is_not_analysed(index: Index) -> None:
    got = answer("Who attends from Germany? " * 200, index)
    assert got.text is None and len(got.question) <= 500


def test_answer_is_the_short_span_and_the_sentence_supports_it(index: Index) -> None:
    got = answer("What happened in Portmoor?", index, article_id="t-en-1")
    assert got.text is not None and len(got.text) <= 120
    assert got.sentence is not None and got.text.rstrip("…") in got.sentence


DATED = Article(
    id="t-de-2",
    title="",
    text=(
        "Die Chemikalie sei am 21. August bei Gefechten in Marea verwendet worden. "
        "Bei dem Angriff wurden 80 Menschen verletzt."
    ),
    lang="de",
)


def test_the_day_of_a_date_counts_nothing() -> None:
    index = Index.build([DATED])
    assert answer("How many people were injured?", index, article_id="t-de-2").text == "80 Menschen"
    # Only the date's day is a number in this sentence: no count, so no answer.
    only_date = Article(id="t-de-3", title="", text=DATED.text.split(". Bei")[0] + ".", lang="de")
    index = Index.build([only_date])
    assert answer("How many people died in Marea?", index, article_id="t-de-3").text is None


def test_a_place_head_noun_asks_for_its_kind_of_place() -> None:
    article = Article(
        id="t-en-3",
        title="",
        text="The attack took place in Aleppo, Syria, on Monday, officials said.",
        lang="en",
    )
    index = Index.build([article])
    assert answer("In which country did the attack take place?", index, "t-en-3").text == "Syria"
    assert answer("In which city did the attack take place?", index, "t-en-3").text == "Aleppo"
    assert answer("Where did the attack take place?", index, "t-en-3").text == "Aleppo"


def test_a_nationality_is_no_person() -> None:
    film = Article(
        id="t-en-4",
        title="",
        text="Stray Dogs, a film directed about the Afghans after the war, won a prize in Venice.",
        lang="en",
    )
    index = Index.build([film])
    assert answer("Who directed the film Stray Dogs?", index, article_id="t-en-4").text is None


def test_the_other_part_of_a_compound_the_question_names_can_be_the_answer() -> None:
    poll = Article(
        id="t-de-5",
        title="",
        text="Laut Umfrage liegt SPÖ-Kandidat Rudolf Hundstorfer vor ÖVP-Kandidat Andreas Khol.",
        lang="de",
    )
    index = Index.build([poll])
    assert answer("Which party is Rudolf Hundstorfer the candidate of?", index, "t-de-5").text == (
        "SPÖ"
    )
    assert answer("Who is the SPÖ candidate?", index, "t-de-5").text == (
        "SPÖ-Kandidat Rudolf Hundstorfer"
    )


def test_a_number_set_off_by_commas_after_a_name_is_an_age() -> None:
    profile = Article(
        id="t-en-5",
        title="",
        text="Berlusconi, 68, has long insisted he was a victim. His party won 12 seats.",
        lang="en",
    )
    index = Index.build([profile])
    assert answer("How old is Berlusconi?", index, "t-en-5").text == "68"
    assert answer("Wie alt ist Silvio Berlusconi?", index, "t-en-5").text == "68"
    assert answer("How many seats did his party win?", index, "t-en-5").text == "12 seats"


def test_a_number_word_compound_answers_how_long() -> None:
    visit = Article(
        id="t-de-6",
        title="",
        text="Obama bricht am Sonntag zu einem dreitägigen Besuch nach Vietnam auf.",
        lang="de",
    )
    index = Index.build([visit])
    assert answer("How long will Obama's visit to Vietnam last?", index, "t-de-6").text == (
        "dreitägigen"
    )
    assert answer("Wann bricht Obama auf?", index, "t-de-6").text == "am Sonntag"


def test_where_prefers_the_place_of_the_dateline() -> None:
    summit = Article(
        id="t-de-9",
        title="",
        text=(
            "Lindau (dpa) – In Lindau beginnt am Mittwoch ein Treffen der Minister der G7, bei "
            "dem nach langer Pause wieder Gespräche über den Handel geführt werden. Zuletzt gab "
            "es Gespräche in Kassel."
        ),
        lang="de",
    )
    index = Index.build([summit])
    # Kassel stands nearer the question's word; the story is filed from Lindau.
    assert answer("Where are the talks held?", index, article_id="t-de-9").text == "Lindau"


def test_a_name_the_article_gives_a_role_elsewhere_is_a_person_not_an_organisation() -> None:
    article = Article(
        id="t-en-9",
        title="",
        text=(
            "Defence minister Moshe Kalon defended the general on Sunday. "
            "The interview with Kalon was aired on Monday evening by the private Vistra."
        ),
        lang="en",
    )
    index = Index.build([article])
    # "Kalon" alone is a name; the first sentence makes him a person, so no channel.
    got = answer("Which channel aired the interview?", index, article_id="t-en-9")
    assert got.text == "Vistra"


def test_a_time_next_to_a_reporting_verb_dates_the_report_not_the_event() -> None:
    arrest = Article(
        id="t-de-10",
        title="",
        text=(
            "Wie das Innenministerium am Montag mitteilte, wurde ein Belgier festgenommen. "
            "Der Verdächtige wurde bereits am 15. Januar in Tanger festgenommen."
        ),
        lang="de",
    )
    index = Index.build([arrest])
    assert answer("When was the Belgian arrested?", index, article_id="t-de-10").text == (
        "15. Januar"
    )
    # Asked about the report, the report's day answers.
    got = answer("When did the ministry announce the arrest?", index, article_id="t-de-10")
    assert got.text == "am Montag"


def test_what_date_is_answered_by_a_day_with_its_number() -> None:
    attack = Article(
        id="t-de-11",
        title="",
        text=(
            "Die Chemikalie wurde im August bei Gefechten eingesetzt. Am Donnerstag hieß es, "
            "die Chemikalie sei am 21. August bei Gefechten eingesetzt worden."
        ),
        lang="de",
    )
    index = Index.build([attack])
    got = answer("Auf welches Datum fiel der Einsatz der Chemikalie?", index, article_id="t-de-11")
    assert got.text == "21. August"


def test_a_place_after_a_preposition_is_where_the_person_serves_not_their_nationality() -> None:
    row = Article(
        id="t-de-12",
        title="",
        text=(
            "Polen hat den russischen Botschafter Igor Lenski einbestellt, Moskau reagierte. "
            "Zuvor hatte Moskau die polnische Botschafterin Anna Kowalik einbestellt."
        ),
        lang="de",
    )
    index = Index.build([row])
    got = answer("Wie heißt die polnische Botschafterin in Moskau?", index, article_id="t-de-12")
    assert got.text is not None and got.text.endswith("Anna Kowalik")


# Hand-written after a corpus report: the verb of "wer vertritt die USA?" appears only as the
# role of other people ("Wirtschaftsvertretern"), in a sentence that also names the USA.
VISIT = Article(
    id="t-de-visit",
    title="Staatsbesuch",
    text=(
        "Washington – Der chinesische Präsident Xi Jinping ist zu einem Staatsbesuch in den USA. "
        "Xi war bereits am Dienstag in den USA eingetroffen, zunächst führte er in Seattle "
        "Gespräche mit Wirtschaftsvertretern."
    ),
    lang="de",
)


def test_a_role_of_other_people_makes_no_bystander_the_answer() -> None:
    index = Index.build([seed(), VISIT], weights={"seed": 1.0})
    got = answer("Wer vertritt die USA?", index)
    assert got.text is not None and "Sherman" in got.text  # the seed: "Für die USA will ..."
    # Over the corpus Xi outranked the seed's answer: his sentence matched both question words.
    xi = answer("Wer vertritt die USA?", index, article_id=VISIT.id)
    assert xi.text is None or xi.confidence < got.confidence
    # A role that stands with its name still answers.
    delegate = Article(
        id="t-de-delegate",
        title="",
        text="Genf – Zu den Gesprächen reist US-Vertreter John Kerrigan, teilte das Amt mit.",
        lang="de",
    )
    index = Index.build([delegate])
    assert "John Kerrigan" in (
        answer("Wer vertritt die USA?", index, article_id=delegate.id).text or ""
    )


def test_a_person_head_noun_is_not_answered_by_an_organisation() -> None:
    campaign = Article(
        id="t-de-campaign",
        title="",
        text="Die Kampagne wird von der Hilfsorganisation Oxfam geleitet.",
        lang="de",
    )
    index = Index.build([campaign])
    # A bare "wer" may be answered by an organisation; "welcher Politiker" asks for a person.
    assert answer("Wer leitet die Kampagne?", index, article_id=campaign.id).text == "Oxfam"
    assert (
        answer("Welcher Politiker leitet die Kampagne?", index, article_id=campaign.id).text is None
    )
