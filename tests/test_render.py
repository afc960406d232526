import html
from datetime import UTC, datetime

import pytest

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


# --- Telegram HTML -----------------------------------------------------------------------------

HOSTILE = "<script>x</script> & *a_ [b](c) 😀 𝔘𝔫𝔦 &amp; <b>"


def _visible(part: str) -> str:
    from .fake_telegram import parse_html

    return parse_html(part, strict=True)[0]  # raises where Telegram says "can't parse entities"


def test_telegram_alert_escapes_article_text() -> None:
    item = DigestItem(
        "a<1>", HOSTILE, "S " + HOSTILE, 0.9, who=(HOSTILE,), url="https://x.org/?a=1&b=2"
    )
    [part] = render.telegram_html(Alert(item, lang="en"))
    visible = _visible(part)
    assert visible.count(HOSTILE) == 3 and "<script>" not in part
    assert 'href="https://x.org/?a=1&amp;b=2"' in part


def test_telegram_refuses_to_link_other_schemes() -> None:
    item = DigestItem("a1", "T", "S", 0.9, source="dpa", url="javascript:alert(1)")
    [part] = render.telegram_html(Alert(item))
    assert "href" not in part and "dpa" in _visible(part)


def test_telegram_digest_splits_at_items_within_the_limit() -> None:
    items = tuple(
        DigestItem(f"id{n}", f"Title {n} 😀&<>", "Text 𝔘 & <x> " * 40, 0.8, topic=f"T{n // 7}")
        for n in range(30)
    )
    parts = render.telegram_html(Digest(items, generated_at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert len(parts) > 1
    visible = [_visible(p) for p in parts]
    assert all(render.utf16_len(p) <= render.TELEGRAM_LIMIT for p in parts)
    for n in range(30):
        assert sum(f"Title {n} 😀&<>" in v for v in visible) == 1
    assert visible[0].startswith("📰 Conflict digest — 30 item(s)")


def test_telegram_oversized_item_loses_text_not_markup() -> None:
    huge = DigestItem("a1", "Big & <bold>", "😀&<" * 3000, 0.9, url="https://x.org/a")
    [part] = render.telegram_html(Alert(huge))
    assert render.utf16_len(part) <= render.TELEGRAM_LIMIT
    visible = _visible(part)
    assert "Big & <bold>" in visible and '<a href="https://x.org/a">' in part
    assert "…" in visible


def test_telegram_long_notice_is_split_without_breaking_characters() -> None:
    text = ("𝔘 & <" * 1500 + "\n") * 3
    parts = render.telegram_html(Notice(text))
    assert len(parts) > 1
    assert all(render.utf16_len(p) <= render.TELEGRAM_LIMIT for p in parts)
    assert "".join(_visible(p).replace("\n", "") for p in parts) == text.replace("\n", "")


def test_cut_never_splits_a_surrogate_pair() -> None:
    assert render.cut("😀" * 10, 5) == "😀😀…"
    assert render.cut("short", 10) == "short"


def test_telegram_answer_links_its_source() -> None:
    answer = Answer(
        "who?",
        "Andreas <Michaelis>",
        sentence="Für Deutschland & Co.",
        sources=(SourceRef("s1", "NATO & Russia", "2022-01", "https://x.org/s1"),),
    )
    [part] = render.telegram_html(answer)
    assert _visible(part).splitlines() == [
        "Andreas <Michaelis>",
        "“Für Deutschland & Co.”",
        "Source: NATO & Russia (2022-01)",
    ]


@pytest.mark.reliability
def test_telegram_text_of_astral_characters_and_entities_is_linear_and_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 #20: 22,500 4-byte characters with `&`/`<` took 10 s (re-escaping the rest of
    the line for every cut). The work is counted, not timed: benchmarks/render.py has the time."""
    text = "𝔘😀&<" * 5625  # 22,500 characters, one line, no space to break at
    escaped = 0
    real_esc = render._esc

    def counting(value: str) -> str:
        nonlocal escaped
        escaped += len(value)
        return real_esc(value)

    monkeypatch.setattr(render, "_esc", counting)
    parts = render.telegram_text(text)
    # Each character escaped about once (the old cut loop escaped ~15x the text here).
    assert escaped <= 2 * len(text)
    assert all(render.utf16_len(p) <= render.TELEGRAM_LIMIT for p in parts)
    assert all(render.utf16_len(p) > render.TELEGRAM_LIMIT - len("&amp;") for p in parts[:-1])
    for part in parts:
        part.encode("utf-8")  # a lone surrogate would raise here
        _visible(part)  # strict HTML: a split entity would raise here
    assert "".join(html.unescape(p) for p in parts) == text


@pytest.mark.reliability
def test_telegram_text_breaks_long_lines_before_a_space_and_keeps_every_character() -> None:
    line = " ".join(f"wort{n}&<x>😀" for n in range(2000))
    parts = render.telegram_text(line + "\nEnde & aus")
    assert len(parts) > 3
    assert all(render.utf16_len(p) <= render.TELEGRAM_LIMIT for p in parts)
    pieces = [html.unescape(p) for p in parts]
    assert all(piece.startswith(" ") for piece in pieces[1:-1])  # cut before a space
    assert "".join(pieces) == line + "\nEnde & aus"


# --- Slack Block Kit ------------------------------------------------------------------------


def _slack_limits_hold(messages: list[render.SlackMessage]) -> None:
    for message in messages:
        assert message.text and render.utf16_len(message.text) <= 3000
        assert len(message.blocks) <= render.SLACK_MAX_BLOCKS
        for block in message.blocks:
            if block["type"] == "section":
                assert render.utf16_len(block["text"]["text"]) <= render.SLACK_SECTION_CHARS
            for element in block.get("elements", []):
                if element.get("type") == "mrkdwn":
                    assert render.utf16_len(element["text"]) <= render.SLACK_SECTION_CHARS


def test_mrkdwn_escape_defuses_mentions_and_links() -> None:
    assert render.mrkdwn_escape("<!channel> & <@U1|x>") == "&lt;!channel&gt; &amp; &lt;@U1|x&gt;"


def test_slack_long_notice_is_split_within_limits() -> None:
    text = "\n".join(f"line {n} <&> " + "𝔘" * 90 for n in range(400))
    messages = render.slack_blocks(Notice(text))
    _slack_limits_hold(messages)
    assert len(messages) >= 1
    shown = "".join(b["text"]["text"] for m in messages for b in m.blocks)
    assert shown.count("&lt;&amp;&gt;") == 400 and "<&>" not in shown


def test_slack_oversized_item_and_id_stay_within_limits() -> None:
    item = DigestItem(
        "x" * 2500,
        "<!here> " * 100,
        "😀&" * 5000,
        0.9,
        who=("A",) * 500,
        source="S" * 5000,
        url="https://e.example/" + "a" * 3000,
    )
    [message] = render.slack_blocks(Alert(item))
    _slack_limits_hold([message])
    assert [b["type"] for b in message.blocks] == ["header", "section", "context"]  # no buttons
    assert "<!here>" not in str(message.blocks)


def test_slack_answer_is_escaped_and_cites_its_source() -> None:
    answer = Answer(
        "q",
        "<@U1> Michaelis",
        sentence="He & <b>she</b>",
        sources=(SourceRef("a1", "Title <x>", "2022-01", "https://e.example/a"),),
    )
    [message] = render.slack_blocks(answer)
    section, context = message.blocks
    assert section["text"]["text"] == "*&lt;@U1&gt; Michaelis*\n_“He &amp; &lt;b&gt;she&lt;/b&gt;”_"
    assert "<https://e.example/a|Title &lt;x&gt;>" in context["elements"][0]["text"]
    [unknown] = render.slack_blocks(Answer("q", None))
    assert unknown.text.startswith("I don't know")


def test_consecutive_notices_are_merged_into_one_message() -> None:
    alert = Alert(ITEM)
    posts = render.merge_notices([Notice("one"), Notice("two"), alert, Notice("three")])
    assert posts == [Notice("one\n\ntwo"), alert, Notice("three")]


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("a\x1b]0;title\x07b", "ab"),  # OSC window title, BEL-terminated
        ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),  # OSC 8 hyperlink, ST
        ("a\x1b[2J\x1b[1;31mb", "ab"),  # CSI clear screen, colour
        ("a\x9b2Jb\x9d0;t\x9cc", "abc"),  # the 8-bit CSI and OSC
        ("a\x1bPq#0;2\x1b\\b", "ab"),  # DCS (sixel)
        ("a\x1bcb\x1b7c", "abc"),  # reset, save cursor
        ("a\x07\x08\x7f\x85b\r\nc\rd", "ab\ncd"),  # BEL, BS, DEL, NEL; CR
        ("tab\tand line\nkept: é 😀 𝔘", "tab\tand line\nkept: é 😀 𝔘"),
    ],
)
def test_plain_text_carries_no_terminal_control(hostile: str, shown: str) -> None:
    """Review defect 7: what an article says must not drive the operator's terminal."""
    item = DigestItem("a1", hostile, hostile, 0.9, source=hostile, topic=hostile)
    answer = Answer("q", hostile, sentence=hostile, sources=(SourceRef("a1", hostile),))
    now = datetime(2024, 5, 1, tzinfo=UTC)
    for post in (Alert(item), Digest((item,), now), answer, Notice(hostile)):
        text = render.plain(post)
        assert shown in text
        assert not {c for c in text if c not in "\n\t" and not c.isprintable()}, repr(text)


@pytest.mark.parametrize(
    "stray",
    ["\x1b]0;x ", "\x9d0;x ", "\x1bPq ", "\x9e", "\x1b F ", "\x90"],
    ids=["osc", "osc-8bit", "dcs", "pm-8bit", "esc-space", "dcs-8bit"],
)
def test_an_unterminated_control_sequence_hides_nothing_after_it(stray: str) -> None:
    """Third review: an OSC/DCS without its terminator took the rest of the post with it (a
    digest headed "4 item(s)" printed one and a half)."""
    now = datetime(2024, 5, 1, tzinfo=UTC)
    items = (
        DigestItem("a1", f"Missile strike on Kharkiv {stray}kills 12 soldiers", "First.", 0.9),
        DigestItem("a2", "NATO moves troops east", "Second.", 0.9),
        DigestItem("a3", "Rebels attack a base in Mali", "Third.", 0.9),
    )
    text = render.plain(Digest(items, now))
    for shown in ("kills 12 soldiers", "NATO moves troops east", "Rebels attack a base in Mali"):
        assert shown in text, repr(text)
    assert "Third." in text
    assert not {c for c in text if c not in "\n\t" and not c.isprintable()}, repr(text)


@pytest.mark.parametrize(
    ("lang", "heading"), [("en", "🚨 8 new alerts"), ("de", "🚨 8 neue Meldungen")]
)
def test_merged_alerts_are_headed_as_alerts_not_as_a_digest(lang: str, heading: str) -> None:
    """Review doc 7: a merged burst was headed "📰 Conflict digest — N item(s)" like a digest."""
    from pathlib import Path

    now = datetime(2024, 5, 1, tzinfo=UTC)
    items = tuple(DigestItem(f"a{n}", f"Title {n}", "Summary.", 0.9) for n in range(8))
    merged = Digest(items, now, lang=lang, alerts=True)
    digest = Digest(items, now, lang=lang)
    assert render.plain(merged).split("\n")[0] == heading
    assert render.plain(digest).startswith("📰 ") and "🚨" not in render.plain(digest)
    [html_part] = render.telegram_html(merged)
    assert html.unescape(html_part.replace("<b>", "").replace("</b>", "")).startswith(heading)
    [slack] = render.slack_blocks(merged)
    assert slack.blocks[0]["text"]["text"] == heading
    # README quotes the headings; they are what the bot prints.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`{heading}`" in readme
    if lang == "en":  # and the digest heading it is contrasted with
        assert f"`{render.plain(digest).splitlines()[0]}`" in readme
