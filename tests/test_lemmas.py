from __future__ import annotations

import threading
from pathlib import Path

import pytest
import simplemma

from bot import lemmas


def test_a_table_is_built_once_from_simplemmas_data_and_gives_the_same_lemmas(
    tmp_path: Path,
) -> None:
    factory = lemmas.TableFactory(tmp_path)
    table = factory.get_dictionary("en")
    path = lemmas.table_path("en", tmp_path)
    assert path.exists()
    built = path.stat().st_mtime_ns
    reference = simplemma.strategies.dictionaries.DefaultDictionaryFactory().get_dictionary("en")
    assert len(table) == len(reference)
    for word in ("soldiers", "attended", "ministries", "went", "Aleppo", "xyzzyq"):
        assert table.get(word) == reference.get(word)
    # A second factory (the next `newsbot ask`) opens the file; it does not rebuild it.
    again = lemmas.TableFactory(tmp_path).get_dictionary("en")
    assert again.get("soldiers") == "soldier"
    assert path.stat().st_mtime_ns == built
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_missing_words_are_misses_not_errors(tmp_path: Path) -> None:
    table = lemmas.TableFactory(tmp_path).get_dictionary("en")
    assert table.get("qqqqzzzz") is None
    assert "qqqqzzzz" not in table
    with pytest.raises(KeyError):
        table["qqqqzzzz"]


def test_the_table_is_shared_by_threads(tmp_path: Path) -> None:
    table = lemmas.TableFactory(tmp_path).get_dictionary("en")
    words = ["soldiers", "attended", "ministries", "talks"] * 200
    results: list[list[str | None]] = []

    def work() -> None:
        results.append([table.get(w) for w in words])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [table.get(w) for w in words]
    assert results == [expected] * 4


def test_an_unwritable_cache_falls_back(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # mkdir under a regular file fails for everyone
    table = lemmas.TableFactory(blocker / "cache").get_dictionary("en")
    assert table.get("soldiers") == "soldier"


def test_the_full_lemmatiser_and_detection_match_simplemma() -> None:
    for word in ("Verteidigungsministerien", "Soldaten", "teilnehmen", "Russlands"):
        assert lemmas.lemmatize(word, "de") == simplemma.lemmatize(word, lang="de")
    assert lemmas.is_known("Soldat", "de")
    assert not lemmas.is_known("Qqqzzz", "de")
    text = "Wer nimmt an dem Treffen in Brüssel teil?"
    assert lemmas.detect(text, ("de", "en")) == simplemma.langdetect(text, lang=("de", "en"))


def test_the_cache_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSBOT_CACHE_DIR", "/somewhere/else")
    assert lemmas.table_path("de") == Path(
        f"/somewhere/else/simplemma-{simplemma.__version__}-de.sqlite3"
    )
    monkeypatch.delenv("NEWSBOT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert lemmas.cache_dir() == Path("/xdg/newsbot")


def test_many_keys_are_looked_up_at_once_with_only_the_found_ones_returned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "words.sqlite3"
    lemmas.write_table(path, [(f"w{i}", f"lemma{i}") for i in range(0, 1200, 2)])
    table = lemmas.Table(path)
    wanted = [f"w{i}" for i in range(1200)]  # more than one query's worth of keys
    found = table.get_many(wanted)
    assert found == {f"w{i}": f"lemma{i}" for i in range(0, 1200, 2)}
    assert found == {k: v for k in wanted if (v := table.get(k)) is not None}
    assert table.get_many([]) == {}
