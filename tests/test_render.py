from datetime import UTC, datetime

from bot.chat import render
from bot.models import Alert, Answer, Digest, DigestItem, Notice, SourceRef

ITEM = DigestItem(
    article_id="a1",
    title="Troops mass near the border",
    summary="Russia moved 3,000 soldiers for exercises.",
    score=0.91,
    reasons=("troops massed", "border"),
    topic="Ukraine",
    who=("Julianne Smith (US ambassador to NATO)",),
    where=("Brussels",),
    source="dpa",
    url="https://example.org/a1",
    published="2022-01",
)


def test_answer_with_source_and_sentence() -> None:
    answer = Answer(
        question="who?",
        text="Andreas Michaelis",
        lang="en",
        sentence="Für Deutschland werde Staatssekretär Andreas Michaelis teilnehmen.",
        sources=(SourceRef("s1", "NATO-Russia Council", "2022-01", None),),
        confidence=0.8,
    )
    out = render.plain(answer)
    assert out.splitlines()[0] == "Andreas Michaelis"
    assert "Staatssekretär Andreas Michaelis teilnehmen" in out
    assert "Source: NATO-Russia Council (2022-01) [s1]" in out


def test_unknown_answer_in_question_language() -> None:
    assert render.plain(Answer("who?", None, lang="en")) == "I don't know — the articles don't say."
    assert "Das weiß ich nicht" in render.plain(Answer("wer?", None, lang="de"))


def test_digest_groups_and_explains() -> None:
    other = DigestItem("a2", "Bomb in Kabul", "A bomb exploded.", 0.7, topic="Afghanistan")
    digest = Digest((ITEM, other), generated_at=datetime(2026, 1, 1, tzinfo=UTC), lang="en")
    out = render.plain(digest)
    assert "2 item(s)" in out
    assert out.index("== Ukraine ==") < out.index("== Afghanistan ==")
    assert "Why flagged: troops massed, border" in out
    assert "Who: Julianne Smith (US ambassador to NATO)" in out
    assert "Source: dpa, 2022-01 · https://example.org/a1" in out


def test_empty_digest_and_german_labels() -> None:
    empty = Digest((), generated_at=datetime(2026, 1, 1, tzinfo=UTC), lang="de")
    assert render.plain(empty) == "Keine neuen konfliktbezogenen Artikel."
    german = Digest((ITEM,), generated_at=datetime(2026, 1, 1, tzinfo=UTC), lang="de")
    assert "Warum gemeldet" in render.plain(german)


def test_alert_and_notice() -> None:
    assert render.plain(Notice("hi")) == "hi"
    alert = render.plain(Alert(ITEM, lang="en"))
    assert alert.startswith("🚨 Alert: Troops mass near the border")
