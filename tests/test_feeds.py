"""Tests for bot.feeds: parsing RSS/Atom/JSON into Articles, both parsers compared."""

from __future__ import annotations

import builtins
import socket
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.feeds import full_text, is_teaser, parse
from bot.lang import detect
from bot.models import Article
from tests.feedfakes import (
    BADINPUT,
    FEED_URL,
    FIXTURES,
    NOW,
    Recorder,
    assert_str_fields,
    fake_dns,
    feed_bytes,
    mock_client,
    shared_file,
)


@pytest.fixture(scope="module", autouse=True)
def _warm_language_model() -> None:
    # simplemma loads its dictionaries on first use (~1 s); keep that out of timed assertions.
    detect("warm up")


# --- parsing --------------------------------------------------------------------------------


def test_rss20() -> None:
    articles, bozo = parse(feed_bytes("rss20.xml"), url="https://news.example.com/rss", now=NOW)
    assert bozo is None
    first, second = articles
    assert first.title == "Truppen & Panzer an der Grenze"
    assert first.text == 'Die Armee hat Truppen verlegt.\n\nZweiter Absatz "zitiert".'
    assert first.lang == "de"  # declared de-DE, normalised
    assert first.published == "2024-05-01T06:30:00+00:00"
    assert first.url == "https://news.example.com/a/1"
    assert first.source == "https://news.example.com/rss"
    assert first.id.startswith("feed:") and len(first.id) == 5 + 40
    assert second.url == "https://news.example.com/a/2"
    assert second.published == NOW.isoformat()  # undated: fetch time


def test_rss10() -> None:
    (article,), bozo = parse(feed_bytes("rss10.xml"), url="https://rdf.example.org/rss", now=NOW)
    assert bozo is None
    assert article.title == "Ceasefire talks resume"
    assert article.lang == "en"
    assert article.published == "2024-04-30T06:00:00+00:00"
    assert article.url == "https://rdf.example.org/story/7"


def test_atom() -> None:
    articles, bozo = parse(feed_bytes("atom.xml"), url="https://atom.example.net/feed", now=NOW)
    assert bozo is None
    english, german = articles
    assert english.title == "Shelling reported near the border"
    # The full content wins over the teaser summary; script content never becomes text.
    assert english.text == "Artillery fire was reported overnight.\n\nOfficials said more later."
    assert english.lang == "en"
    assert english.published == "2024-04-29T09:15:00+00:00"
    assert german.lang == "de"  # entry xml:lang overrides the feed's
    assert german.url == "https://atom.example.net/relative/2"  # relative link resolved


def test_json_feed() -> None:
    articles, bozo = parse(feed_bytes("jsonfeed.json"), url="https://json.example.org/f", now=NOW)
    assert bozo == "1 malformed JSON Feed items skipped"
    german, english = articles  # duplicate id "1" dropped
    assert german.title == "Luftangriff gemeldet"
    assert german.text == "Die Regierung meldet Angriffe & Schäden."
    assert german.lang == "de"
    assert german.published == "2024-04-28T10:00:00+00:00"
    assert english.lang == "en"
    assert english.text == "Plain text with <angle brackets> kept literally."
    assert english.published == NOW.isoformat()  # garbage date


def test_ids_are_stable_and_scoped() -> None:
    content = feed_bytes("rss20.xml")
    once, _ = parse(content, url="https://a.example/rss", now=NOW)
    again, _ = parse(content, url="https://a.example/rss", now=NOW + timedelta(hours=1))
    elsewhere, _ = parse(content, url="https://b.example/rss", now=NOW)
    assert [a.id for a in once] == [a.id for a in again]
    # An opaque guid ("beispiel-1") only means something inside its own feed...
    assert once[0].id != elsewhere[0].id
    # ...while the same link is the same story in any feed.
    assert once[1].id == elsewhere[1].id


def test_id_falls_back_to_title_and_text() -> None:
    doc = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>Only a title</title><description>and text</description></item>
    <item><title>Only a title</title><description>and text</description></item>
    <item></item></channel></rss>"""
    articles, _ = parse(doc, url=FEED_URL, now=NOW)
    assert len(articles) == 1  # identical content deduped, empty item skipped
    assert articles[0].url is None


def test_duplicate_guid_and_garbage_date() -> None:
    doc = b"""<rss version="2.0"><channel><title>Dupes</title>
    <item><title>First</title><guid>same-guid</guid><pubDate>not a date</pubDate></item>
    <item><title>Second</title><guid>same-guid</guid></item>
    <item><title>Far future</title><guid>g2</guid>
      <pubDate>Sat, 01 Jan 2999 00:00:00 GMT</pubDate></item>
    </channel></rss>"""
    articles, _ = parse(doc, url=FEED_URL, now=NOW)
    assert [a.title for a in articles] == ["First", "Far future"]
    assert all(a.published == NOW.isoformat() for a in articles)


@pytest.mark.parametrize("content", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_document_is_a_no_op(content: bytes) -> None:
    assert parse(content.strip(b"\xef\xbb\xbf"), url=FEED_URL, now=NOW) == ([], None)


def test_html_emoji_and_astral_text_is_plain_str() -> None:
    doc = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>I</title>'
        "<item><title>&lt;b&gt;Truppen&lt;/b&gt; an der Grenze *_[`</title>"
        "<description>&lt;script&gt;alert(1)&lt;/script&gt; Soldaten 🪖 𝔄𝔫𝔤𝔯𝔦𝔣𝔣 "
        "&amp;amp; &lt;i&gt;Einmarsch&lt;/i&gt; 1 &amp;lt; 2</description>"
        "<link>javascript:alert(1)</link><guid>g</guid></item></channel></rss>"
    ).encode()
    (article,), _ = parse(doc, url=FEED_URL, now=NOW)
    assert article.title == "Truppen an der Grenze *_[`"
    assert article.text == "Soldaten 🪖 𝔄𝔫𝔤𝔯𝔦𝔣𝔣 & Einmarsch 1 < 2"
    assert "alert" not in article.text
    assert article.url is None  # only http(s) links are kept
    assert_str_fields(article)


def test_feedparser_only_ever_gets_bytes() -> None:
    # feedparser.parse(b"/etc/passwd") would open that file; a body naming a path must not.
    articles, _ = parse(b"/etc/passwd", url=FEED_URL, now=NOW)
    assert articles == []
    local = FIXTURES / "rss20.xml"
    assert parse(str(local).encode(), url=FEED_URL, now=NOW)[0] == []


def _badinput_files() -> list[Any]:
    folders = ("illformed", "encoding", "entities", "hostile")
    files = [
        f for d in folders if (BADINPUT / d).is_dir() for f in sorted((BADINPUT / d).iterdir())
    ]
    files = [f for f in files if f.suffix != ".gz"]
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{BADINPUT} not found"))]
    return [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in files]


@pytest.mark.parametrize("path", _badinput_files())
def test_badinput_corpus_never_raises(path: Path) -> None:
    articles, bozo = parse(path.read_bytes(), url="https://bad.example/feed", now=NOW)
    assert bozo is None or isinstance(bozo, str)
    for article in articles:
        assert_str_fields(article)


@pytest.mark.parametrize("name", ["billion-laughs.xml", "xxe-file.xml", "xxe-net.xml"])
def test_entity_attacks_do_not_expand_or_reach_out(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = shared_file("hostile", name).read_bytes()
    opened: list[object] = []
    real_open = builtins.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(file)
        return real_open(file, *args, **kwargs)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parser tried to open a network connection")

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    started = time.perf_counter()
    articles, bozo = parse(content, url="https://bad.example/feed", now=NOW)
    elapsed = time.perf_counter() - started
    monkeypatch.undo()

    assert elapsed < 0.1, f"parse took {elapsed * 1000:.1f} ms"
    assert bozo is not None  # flagged
    assert opened == []
    everything = " ".join(f"{a.title} {a.text}" for a in articles)
    assert "lollol" not in everything  # no expansion
    assert "root:" not in everything  # no file content
    assert len(everything) < 200


# --- full text ------------------------------------------------------------------------------

ARTICLE_PAGE = (
    "<html><head><title>Page</title><script>var x = 1;</script></head><body>"
    "<nav>Home | World | Sport</nav><article><h1>Truppen an der Grenze</h1>"
    + "".join(
        f"<p>Paragraph {i}: The army moved several units towards the border overnight, "
        "officials said, while negotiators prepared for another round of talks.</p>"
        for i in range(6)
    )
    + "</article><footer>© Example</footer></body></html>"
)


async def test_full_text_extracts_main_text() -> None:
    page = "https://pages.example.com/story"
    response = httpx.Response(200, text=ARTICLE_PAGE, headers={"Content-Type": "text/html"})
    async with mock_client(Recorder({page: response})) as client:
        text = await full_text(client, page, resolve=fake_dns)
    assert text is not None
    assert "Paragraph 5: The army moved" in text
    assert "var x" not in text


async def test_full_text_refuses_internal_redirect() -> None:
    page = "https://pages.example.com/story"
    redirect = httpx.Response(302, headers={"Location": "http://[::1]/"})
    recorder = Recorder({page: redirect})
    async with mock_client(recorder) as client:
        assert await full_text(client, page, resolve=fake_dns) is None
    assert recorder.urls == [page]


def test_is_teaser() -> None:
    article = Article(id="feed:x", title="t", text="Kurz.", lang="de")
    assert is_teaser(article)
    assert not is_teaser(replace(article, text="Lang. " * 100))
    assert is_teaser(replace(article, text="Lang. " * 100 + "[…]"))
