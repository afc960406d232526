"""Build bot/data/dictionary/{de-en,en-de}.tsv.gz, the DE↔EN word lexicon, from the Ding dictionary.

Not run at install or run time: the derived file is committed. Source: Debian's `trans-de-en`
(Ding, Frank Richter, TU Chemnitz; GPL-2+), read from /usr/share/trans/de-en:

    apt-get install -y trans-de-en && .venv/bin/python scripts/build_lexicon.py

Each Ding line is `German | sub-entries :: English | sub-entries`; only the head entry pair (the
part before the first `|` on each side) is used, because the sub-entries are inflected forms,
phrases and example sentences. Synonyms (`;`) on both sides are paired. Both sides are
lemmatised with simplemma and written as newsbot comparison keys (`bot.extract.key_of`), so the
file must be rebuilt when the key function changes.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.extract import key_of, lang_data, lemma, skeleton

SOURCE = Path("/usr/share/trans/de-en")
TARGET = Path(__file__).resolve().parents[1] / "bot" / "data" / "dictionary"
# A head word with more translations than this is too vague to translate a question word.
MAX_TRANSLATIONS = 8
# English -> German keeps a German word only when the English one is among its first senses:
# "attend" is a late sense of "kommen", and "kommen" would match nearly every article.
MAX_REVERSE_RANK = 4
_NOTES = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|/[^/]*/|<[^>]*>")
_PLACEHOLDERS = re.compile(
    r"\b(?:etw|jdm|jdn|jds|jd|sb|sth|sb's|one's|oneself|sich|someone|something)\b\.?", re.I
)
_WORD = re.compile(r"^[^\W\d_][\w-]*$")


def clean(term: str, lang: str) -> list[str]:
    """The words of one synonym, notes and placeholders removed; empty when unusable."""
    term = _NOTES.sub(" ", term)
    term = _PLACEHOLDERS.sub(" ", term)
    words = term.replace("’", "'").split()
    if lang == "en" and words and words[0] == "to":
        words = words[1:]  # infinitive marker: "to attend"
    if lang == "en" and words and words[0] in ("a", "an", "the"):
        words = words[1:]
    if not words or not all(_WORD.match(w) for w in words):
        return []
    return words


def keys(words: list[str], lang: str) -> str | None:
    """The comparison key of a one-word term, or of an English two-word term joined."""
    stop = lang_data(lang).stopwords
    if len(words) == 1:
        return None if words[0].lower() in stop or len(words[0]) < 2 else key_of(words[0], lang)
    if lang == "en" and len(words) == 2 and not any(w.lower() in stop for w in words):
        # Matches the joined word pairs of English sentences ("foreign minister").
        return skeleton(words[0] + lemma(words[1], lang))
    return None


def build(source: Path) -> dict[str, list[str]]:
    """German key -> English keys, in dictionary order."""
    table: dict[str, list[tuple[str, int]]] = {}
    with source.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or "::" not in line:
                continue
            de_side, en_side = line.rstrip("\n").split("::", 1)
            de_head, en_head = de_side.split("|", 1)[0], en_side.split("|", 1)[0]
            de_terms = [clean(t, "de") for t in _NOTES.sub(" ", de_head).split(";")]
            en_keys = [keys(clean(t, "en"), "en") for t in _NOTES.sub(" ", en_head).split(";")]
            for words in de_terms:
                de = keys(words, "de")
                if de is None:
                    continue
                # Head words are lemmas already; one that simplemma maps onto another lemma
                # ("teilnehmend" -> "teilnehmen") translates that lemma only after its own entry.
                rank = 0 if de == skeleton(words[0]) else 1
                out = table.setdefault(de, [])
                for en in filter(None, en_keys):
                    if en != de and all(en != e for e, _ in out):
                        out.append((en, rank))
    return {
        de: [en for en, _ in sorted(ens, key=lambda p: p[1])][:MAX_TRANSLATIONS]
        for de, ens in table.items()
        if ens
    }


def main() -> int:
    """Build both directions and print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    if not args.source.exists():
        print(f"{args.source} not found: apt-get install -y trans-de-en")
        return 1
    table = build(args.source)
    reverse: dict[str, list[tuple[int, int, str]]] = {}
    for de, ens in table.items():
        for rank, en in enumerate(ens):
            if rank <= MAX_REVERSE_RANK:
                reverse.setdefault(en, []).append((rank, len(de), de))
    directions = {
        "de-en": {de: ens[:MAX_TRANSLATIONS] for de, ens in table.items()},
        "en-de": {
            en: [de for _, _, de in sorted(cands)][:MAX_TRANSLATIONS]
            for en, cands in reverse.items()
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    for name, rows in directions.items():
        path = args.output / f"{name}.tsv.gz"
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
            fh.write(f"# {name}: key<TAB>translation keys; derived from Ding, GPL-2+; see README\n")
            fh.writelines(f"{k}\t{' '.join(v)}\n" for k, v in sorted(rows.items()))
        pairs = sum(len(v) for v in rows.values())
        size = path.stat().st_size / 1e6
        print(f"{name}: {len(rows)} head words, {pairs} pairs, {size:.1f} MB -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
