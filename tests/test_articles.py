import json
import os
from pathlib import Path

import pytest

from bot import articles
from bot.articles import BadInput, Rejection
from bot.models import Article

SEED = Path(__file__).resolve().parents[1] / "articles" / "nato-russland-rat-2022-01.txt"


def read_all(*paths: Path, **kwargs: object) -> list[Article | Rejection]:
    return list(articles.read(paths, **kwargs))  # type: ignore[arg-type]


def test_seed_article_has_date_dateline_title_and_language() -> None:
    [seed] = read_all(SEED)
    assert not isinstance(seed, Rejection)
    assert seed.published == "2022-01"
    assert seed.place == "Brüssel"
    assert seed.agency == "dpa"
    assert seed.lang == "de"
    assert seed.title.startswith("Vertreter der 30 Nato-Staaten")
    assert seed.title.endswith("zusammen.")
    assert "Andreas Michaelis" in seed.text
    assert not seed.text.startswith("date")


def test_ids_are_stable_content_hashes() -> None:
    [first] = read_all(SEED)
    [second] = read_all(SEED)
    assert isinstance(first, Article) and isinstance(second, Article)
    assert first.id == second.id
    assert len(first.id) == 16


def test_txt_with_title_line(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(
        "Troops mass at the border\n\nBERLIN (Reuters) – Soldiers gathered on Monday.\n"
    )
    [article] = read_all(path)
    assert isinstance(article, Article)
    assert article.title == "Troops mass at the border"
    assert article.place == "BERLIN"
    assert article.agency == "Reuters"
    assert article.lang == "en"


def test_markdown_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_text(
        '---\nid: md-1\ntitle: "Gespräche in Genf"\nlang: de\npublished: 2016-01-25\n'
        "url: https://example.org/a\n---\n# Ignored heading\n\nDie Gespräche beginnen am Montag.\n"
    )
    [article] = read_all(path)
    assert isinstance(article, Article)
    assert (article.id, article.title, article.lang) == ("md-1", "Gespräche in Genf", "de")
    assert article.published == "2016-01-25"
    assert article.url == "https://example.org/a"
    assert article.text == "Die Gespräche beginnen am Montag."


def test_html_main_text(tmp_path: Path) -> None:
    path = tmp_path / "c.html"
    body = "Russia has massed troops near the border with Ukraine, officials said. " * 5
    path.write_text(
        f"<html><head><title>Troops gather</title></head><body><nav>Home | About</nav>"
        f"<article><h1>Troops gather</h1><p>{body}</p></article></body></html>"
    )
    [article] = read_all(path)
    assert isinstance(article, Article)
    assert article.title == "Troops gather"
    assert "massed troops" in article.text
    assert "Home | About" not in article.text


def test_jsonl_records_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "x1", "title": "T", "text": "War in the north.", "lang": "en"}),
                "{not json",
                json.dumps({"id": "x2", "title": "No text"}),
                json.dumps(["a list"]),
                json.dumps(
                    {"id": "x3", "text": "Krieg im Norden. Mehr folgt.", "published": "2016"}
                ),
            ]
        )
    )
    results = read_all(path)
    good = [r for r in results if isinstance(r, Article)]
    bad = [r for r in results if isinstance(r, Rejection)]
    assert [a.id for a in good] == ["x1", "x3"]
    assert good[1].title == "Krieg im Norden." and good[1].lang == "de"
    assert [b.where for b in bad] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "malformed JSON" in bad[0].reason
    assert "missing field 'text'" in bad[1].reason


def test_json_object_and_list(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"id": "j1", "title": "A", "text": "B c."}))
    (tmp_path / "many.json").write_text(json.dumps([{"text": "First one."}, {"text": "Second."}]))
    results = read_all(tmp_path)
    assert sorted(r.id for r in results if isinstance(r, Article))[0] != ""
    assert len(results) == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"   \n\t\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
    ],
)
def test_bad_files_are_rejected_with_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    [rejection] = read_all(path)
    assert isinstance(rejection, Rejection)
    assert rejection.where == str(path)
    assert reason in rejection.reason


def test_oversized_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("Krieg. " * 1000)
    [rejection] = read_all(path, max_bytes=100)
    assert isinstance(rejection, Rejection)
    assert "over the 100-byte limit" in rejection.reason


def test_invalid_utf8_falls_back_to_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Gespräche über den Waffenstillstand – „bald“.".encode("cp1252"))
    [article] = read_all(path)
    assert isinstance(article, Article)
    assert "Gespräche über" in article.text and "„bald“" in article.text


def test_missing_path_is_a_rejection(tmp_path: Path) -> None:
    [rejection] = read_all(tmp_path / "nope.txt")
    assert isinstance(rejection, Rejection) and "no such file" in rejection.reason


def test_rest_of_folder_is_read_despite_bad_files(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Heavy fighting continued in the east on Sunday.")
    (tmp_path / "bad.txt").write_bytes(b"")
    (tmp_path / "ignored.png").write_bytes(b"\x89PNG")
    results = read_all(tmp_path)
    assert sum(isinstance(r, Article) for r in results) == 1
    assert sum(isinstance(r, Rejection) for r in results) == 1


def test_make_article_requires_text() -> None:
    with pytest.raises(BadInput):
        articles.make_article(title="", text="  ", source="x")


def test_first_sentence_skips_abbreviations_and_caps_length() -> None:
    assert (
        articles.first_sentence("Dr. Smith met Mr. Miller. Then more.")
        == "Dr. Smith met Mr. Miller."
    )
    long = "word " * 100
    assert len(articles.first_sentence(long)) <= 201


@pytest.mark.reliability
def test_html_without_lxml_html_clean_is_a_rejection_not_an_import_error(
    tmp_path: Path,
) -> None:
    """Issue 11 #22: a fresh install with lxml 6 lacked lxml_html_clean; the ImportError escaped."""
    import sys

    path = tmp_path / "page.html"
    path.write_text("<html><body><article><p>Troops gather at the border.</p></article></body>")
    saved = dict(sys.modules)
    for name in list(sys.modules):
        if name.split(".")[0] in ("trafilatura", "justext", "lxml_html_clean", "lxml"):
            del sys.modules[name]
    sys.modules["lxml_html_clean"] = None  # type: ignore[assignment]  # import now fails
    try:
        [result] = read_all(path)
    finally:
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        sys.modules.update(saved)
    assert isinstance(result, Rejection)
    assert result.reason.startswith("cannot read HTML (reinstall newsbot): ")
    assert "lxml_html_clean" in result.reason


@pytest.mark.reliability
def test_an_oversized_jsonl_record_is_rejected_unread_and_the_rest_are_read(
    tmp_path: Path,
) -> None:
    """Review: one 120 MB JSON Lines record was stored whole (2.6 GB of memory)."""
    path = tmp_path / "feed.jsonl"
    good = '{"id": "a", "title": "Kämpfe", "text": "Kämpfe im Osten dauern an."}\n'
    huge = '{"id": "b", "text": "' + "x" * 50_000 + '"}\n'
    path.write_text(good + huge + good.replace('"a"', '"c"'), encoding="utf-8")
    results = list(articles.read([path], max_bytes=10_000))
    assert [r.id for r in results if isinstance(r, Article)] == ["a", "c"]
    [rejected] = [r for r in results if isinstance(r, articles.Rejection)]
    assert rejected.where == f"{path}:2"
    assert f"{len(huge.encode()):,} bytes, over the 10,000-byte limit" in rejected.reason


def test_an_empty_jsonl_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    [rejected] = list(articles.read([path]))
    assert isinstance(rejected, articles.Rejection) and rejected.reason == "empty file"


@pytest.mark.parametrize(
    ("head", "published"),
    [
        ("", None),
        ('<meta property="article:published_time" content="2025-03-04T10:00:00Z">', "2025-03-04"),
    ],
    ids=["no-date", "stated-date"],
)
def test_html_dates_are_what_the_page_states_not_a_copyright_year(
    tmp_path: Path, head: str, published: str | None
) -> None:
    """A page without a date but with "Copyright 2026" was stored as published 2026-01-01."""
    body = "Troops gathered at the border on Monday, officials said, as tensions rose. " * 3
    path = tmp_path / "page.html"
    path.write_text(
        f"<html><head><title>Troops gather</title>{head}</head><body><article>"
        f"<h1>Troops gather</h1><p>{body}</p></article>"
        "<footer>Copyright 2026</footer></body></html>"
    )
    [article] = read_all(path)
    assert isinstance(article, Article) and article.published == published


def test_an_empty_text_field_is_called_empty_not_missing(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"id": "x2", "text": "  "}) + "\n")
    [rejected] = read_all(path)
    assert isinstance(rejected, Rejection) and rejected.reason == "field 'text' is empty"


def test_a_fifo_is_rejected_unopened_and_the_other_file_is_still_read(tmp_path: Path) -> None:
    """Reading a FIFO blocked for ever, so the good file named before it was never reported."""
    good = tmp_path / "ok.txt"
    good.write_text("Heavy fighting continued in the east on Sunday.")
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    jsonl_pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(jsonl_pipe)
    # No writer ever opens the FIFOs: opening one for reading would hang this test.
    ok, rejected, rejected_jsonl = read_all(good, pipe, jsonl_pipe)
    assert isinstance(ok, Article)
    for rejection, path in ((rejected, pipe), (rejected_jsonl, jsonl_pipe)):
        assert isinstance(rejection, Rejection) and rejection.where == str(path)
        assert "not a regular file" in rejection.reason


def test_a_symlink_to_a_device_is_rejected_not_read_without_end(tmp_path: Path) -> None:
    """A link to /dev/zero was read until memory ran out (2 GB in 8 s)."""
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    [rejection] = read_all(zero)
    assert isinstance(rejection, Rejection) and "not a regular file" in rejection.reason


def test_a_symlink_out_of_a_folder_is_rejected_and_one_inside_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    secret = tmp_path / "passwd.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (folder / "pw.txt").symlink_to(secret)
    (folder / "real.txt").write_text("Heavy fighting continued in the east on Sunday.")
    (folder / "alias.txt").symlink_to(folder / "real.txt")
    results = read_all(folder)
    assert [r.source for r in results if isinstance(r, Article)] == [
        str(folder / "alias.txt"),
        str(folder / "real.txt"),
    ]
    [rejection] = [r for r in results if isinstance(r, Rejection)]
    assert rejection.where == str(folder / "pw.txt") and "outside" in rejection.reason
    # The watcher names each file itself: `within` applies the same rule to it.
    [alone] = list(articles.read([folder / "pw.txt"], within=folder))
    assert isinstance(alone, Rejection) and "outside" in alone.reason


def test_malformed_records_are_skipped_naming_file_line_and_field(tmp_path: Path) -> None:
    """{"id":5,"text":7}, `published: notadate`, `id: [unclosed`, `date 2099-13-45` were stored."""
    records = tmp_path / "r.jsonl"
    records.write_text(
        '{"id": 5, "text": 7}\n'
        '{"id": "ok", "text": "Heavy fighting continued in the east."}\n'
        '{"id": "n", "text": ["a"]}\n'
        '{"id": "d", "text": "Fighting.", "published": "2016-02-30"}\n'
    )
    bad_date = tmp_path / "d.md"
    bad_date.write_text("---\ntitle: T\npublished: notadate\n---\nHeavy fighting.\n")
    bad_id = tmp_path / "i.md"
    bad_id.write_text("---\nid: [unclosed\n---\nHeavy fighting.\n")
    bad_txt = tmp_path / "x.txt"
    bad_txt.write_text("date 2099-13-45\nHeavy fighting continued in the east.\n")
    results = read_all(records, bad_date, bad_id, bad_txt)
    assert [r.id for r in results if isinstance(r, Article)] == ["ok"]
    rejected = {r.where: r.reason for r in results if isinstance(r, Rejection)}
    assert rejected.keys() == {
        f"{records}:1",
        f"{records}:3",
        f"{records}:4",
        f"{bad_date}:3",
        f"{bad_id}:2",
        f"{bad_txt}:1",
    }
    assert rejected[f"{records}:1"] == "field 'id' must be a string, not int"
    assert rejected[f"{records}:3"] == "field 'text' must be a string, not list"
    assert "field 'published' is not a date" in rejected[f"{records}:4"]
    assert "field 'published' is not a date" in rejected[f"{bad_date}:3"]
    assert "field 'id' is a list or map" in rejected[f"{bad_id}:2"]
    assert "field 'date' is not a date" in rejected[f"{bad_txt}:1"]


@pytest.mark.parametrize("value", ["2016", "2016-02", "2016-02-29", "2025-03-04T10:00:00Z"])
def test_well_formed_dates_are_kept(tmp_path: Path, value: str) -> None:
    path = tmp_path / "a.md"
    path.write_text(f"---\npublished: {value}\n---\nHeavy fighting continued in the east.\n")
    [article] = read_all(path)
    assert isinstance(article, Article) and article.published == value


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_with_a_byte_order_mark_is_text(tmp_path: Path, encoding: str) -> None:
    """Notepad's "Unicode" files were rejected as "binary file (NUL bytes)"."""
    text = "Luftangriffe auf Aleppo\n\nBei Luftangriffen auf Aleppo sind Zivilisten getötet worden."
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    (tmp_path / "a.txt").write_bytes(bom + text.encode(encoding))
    record = json.dumps({"id": "j1", "text": "Krieg im Norden. Mehr folgt."}, ensure_ascii=False)
    (tmp_path / "b.jsonl").write_bytes(bom + f"{record}\n".encode(encoding))
    first, second = read_all(tmp_path / "a.txt", tmp_path / "b.jsonl")
    assert isinstance(first, Article), first
    assert first.title == "Luftangriffe auf Aleppo" and "getötet" in first.text
    assert isinstance(second, Article) and second.id == "j1", second
    # Without a byte order mark, NUL bytes still mean binary.
    (tmp_path / "c.txt").write_bytes(text.encode("utf-16-le"))
    [binary] = read_all(tmp_path / "c.txt")
    assert isinstance(binary, Rejection) and "binary" in binary.reason


@pytest.mark.reliability
def test_a_fifo_inside_a_folder_is_named_with_its_reason_like_a_named_one(tmp_path: Path) -> None:
    """A FIFO in a folder was left out of the listing: skipped without a word (review defect 8)."""
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "ok.txt").write_text("Heavy fighting continued in the east on Sunday.")
    os.mkfifo(folder / "fifo.txt")
    os.mkfifo(folder / "fifo.jsonl")
    results = read_all(folder)
    assert [r.source for r in results if isinstance(r, Article)] == [str(folder / "ok.txt")]
    rejected = {r.where: r.reason for r in results if isinstance(r, Rejection)}
    reason = "not a regular file (FIFO, device or socket); not read"
    assert rejected == {str(folder / "fifo.jsonl"): reason, str(folder / "fifo.txt"): reason}
    # Named directly, the same words: one rule for both.
    [direct] = read_all(folder / "fifo.txt")
    assert isinstance(direct, Rejection) and direct.reason == reason
