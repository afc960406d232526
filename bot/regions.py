"""The world's countries by name in English and German, and the main country of a story.

Names and codes come from `pycountry` (ISO 3166-1) and its bundled German gettext
translations; a short table below adds the names newsrooms actually write ("Russland",
"Britain", "Nordkorea") and the labels the classifier's gazetteer uses, so a country has one
label across both languages. The heading of a story is its main country: where it is named
most, the title and opening counting more than a passing mention further down.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.classify import region_weights
from bot.models import Article

# Canonical English labels where ISO's short name is not what news say; they match the region
# labels of bot/data/lexicon so the gazetteer and this list agree.
_LABELS = {
    "BO": "Bolivia",
    "CD": "Congo",
    "CG": "Republic of the Congo",
    "CI": "Ivory Coast",
    "CZ": "Czechia",
    "FM": "Micronesia",
    "GB": "United Kingdom",
    "IR": "Iran",
    "KP": "North Korea",
    "KR": "South Korea",
    "LA": "Laos",
    "MD": "Moldova",
    "PS": "Palestinian territories",
    "RU": "Russia",
    "SY": "Syria",
    "TR": "Turkey",
    "TW": "Taiwan",
    "TZ": "Tanzania",
    "US": "United States",
    "VA": "Vatican City",
    "VE": "Venezuela",
    "VN": "Vietnam",
}
# German labels where the ISO translation is the formal name.
_LABELS_DE = {
    "CD": "Kongo",
    "CG": "Republik Kongo",
    "GB": "Großbritannien",
    "KP": "Nordkorea",
    "KR": "Südkorea",
    "PS": "Palästinensergebiete",
    "RU": "Russland",
    "US": "USA",
}
# Other names and forms in common use (inflected German forms are matched by suffix).
_ALIASES = {
    "CD": ("DR Kongo", "DR Congo", "Demokratische Republik Kongo"),
    "GB": ("Britain", "Great Britain", "UK", "Großbritannien", "Vereinigtes Königreich"),
    "KP": ("Nordkorea", "North Korea"),
    "KR": ("Südkorea", "South Korea"),
    "MM": ("Burma",),
    "NL": ("Holland",),
    "PS": ("Palestine", "Palästina", "Palästinensergebiete", "Palestinian territories"),
    "RU": ("Russland", "Russia"),
    "US": ("USA", "U.S.", "United States", "America", "Amerika", "Vereinigte Staaten"),
    "CI": ("Elfenbeinküste", "Ivory Coast"),
}
# Conflict regions that are no ISO country but are topics of the classifier's gazetteer
# (bot/data/lexicon), with the names users type for them in a chat's country filter.
_REGIONS = {
    "Middle East": ("Nahost", "Naher Osten", "Nahen Osten"),
    "Chechnya": ("Tschetschenien",),
    "Nagorno-Karabakh": ("Bergkarabach", "Berg-Karabach", "Karabakh", "Karabach"),
    "Kurds": ("Kurden", "Kurdistan"),
}
# German genitive and dative endings: "Syriens", "Irans", "den Niederlanden".
_ENDINGS = ("ns", "es", "s", "n")
_TITLE_WEIGHT = 3.0
_LEAD_WEIGHT = 2.0
_LEAD_CHARS = 300


@dataclass(frozen=True, slots=True)
class Country:
    """One state: ISO code and its labels in English and German."""

    code: str
    en: str
    de: str

    def label(self, lang: str) -> str:
        """The country's name in `lang` (German or English)."""
        return self.de if lang == "de" else self.en


def _same(name: str) -> str:
    return name


def _short(name: str) -> str:
    # "Iran, Islamic Republic of" -> "Iran"; "Syrien, Arabische Republik" -> "Syrien".
    return name.split(",")[0].strip()


@functools.cache
def countries() -> dict[str, Country]:
    """Every ISO 3166-1 country by alpha-2 code."""
    import pycountry  # deferred: only the digest and story merging need the country list

    translate: Callable[[str], str]
    try:
        german = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["de"])
        translate = german.gettext
    except OSError:
        translate = _same
    found: dict[str, Country] = {}
    for entry in pycountry.countries:
        code = entry.alpha_2
        en = _LABELS.get(code) or getattr(entry, "common_name", None) or _short(entry.name)
        de = _LABELS_DE.get(code) or _short(translate(entry.name))
        found[code] = Country(code, en, de)
    return found


_WORD = re.compile(r"\w+")
# "U.S." is written as one acronym.
_DOTTED = re.compile(r"\b(?:[A-Z]\.){2,}")


@functools.cache
def _names() -> tuple[dict[tuple[str, ...], str], dict[str, str], dict[str, tuple[int, ...]]]:
    """Name forms as word tuples (case-folded) -> code, acronyms -> code, first word -> sizes."""
    import pycountry

    words: dict[tuple[str, ...], str] = {}
    acronyms: dict[str, str] = {}
    for code, country in countries().items():
        entry = pycountry.countries.get(alpha_2=code)
        forms = {country.en, country.de, *_ALIASES.get(code, ())}
        if entry is not None:
            forms.add(_short(entry.name))
            forms.add(getattr(entry, "official_name", "") or "")
        for form in forms:
            parts = tuple(w.casefold() for w in _WORD.findall(form))
            if not parts:
                continue
            if (len(parts) == 1 and len(parts[0]) < 4) or all(len(p) == 1 for p in parts):
                # "USA", "UK", "U.S.": only as written, so the pronoun "us" is no country.
                acronyms.setdefault("".join(_WORD.findall(form)), code)
            else:
                words.setdefault(parts, code)
    sizes: dict[str, set[int]] = {}
    for key in words:
        sizes.setdefault(key[0], set()).add(len(key))
    return words, acronyms, {w: tuple(sorted(n, reverse=True)) for w, n in sizes.items()}


def mentions(text: str) -> list[str]:
    """Country codes named in `text`, one per mention, in order."""
    table, acronyms, first = _names()
    tokens = _WORD.findall(_DOTTED.sub(lambda m: m.group().replace(".", ""), text))
    folded = [t.casefold() for t in tokens]
    found: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        step = 0
        if tokens[i][:1].isupper():
            code = None
            for size in first.get(folded[i], ()):
                code = table.get(tuple(folded[i : i + size]))
                if code is not None:
                    step = size
                    break
            if code is None:
                code = acronyms.get(tokens[i]) or _inflected(folded[i], table)
                step = 1
            if code is not None:
                found.append(code)
        i += step or 1
    return found


def _inflected(word: str, table: dict[tuple[str, ...], str]) -> str | None:
    """A German genitive or dative form of a one-word name: "Syriens", "Niederlanden"."""
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            code = table.get((word[: -len(ending)],))
            if code is not None:
                return code
    return None


@functools.cache
def _region_forms() -> dict[tuple[str, ...], str]:
    return {
        tuple(w.casefold() for w in _WORD.findall(form)): label
        for label, forms in _REGIONS.items()
        for form in (label, *forms)
    }


def resolve(name: str) -> str | None:
    """The English label of the country or conflict region a user means by `name` (English or
    German, any case, common short forms); None when it names none."""
    words = tuple(w.casefold() for w in _WORD.findall(name))
    if not words:
        return None
    if words in _region_forms():
        return _region_forms()[words]
    table, acronyms, _ = _names()
    code = (
        table.get(words)
        or acronyms.get("".join(_WORD.findall(name)).upper())
        or (_inflected(words[0], table) if len(words) == 1 else None)
    )
    return countries()[code].en if code else None


def label(code_or_label: str, lang: str) -> str:
    """A country's name in `lang`, from its code or its English label; other labels as given."""
    table = countries()
    country = table.get(code_or_label) or next(
        (c for c in table.values() if c.en == code_or_label), None
    )
    return country.label(lang) if country else code_or_label


def weights(article: Article) -> dict[str, float]:
    """How strongly each country (English label) or conflict region is the article's place."""
    table = countries()
    scores: defaultdict[str, float] = defaultdict(float)
    lead = article.text[:_LEAD_CHARS]
    for weight, text in (
        (_TITLE_WEIGHT, f"{article.title} {article.place or ''}"),
        (_LEAD_WEIGHT, lead),
        (1.0, article.text[_LEAD_CHARS:]),
    ):
        for code in mentions(text):
            scores[table[code].en] += weight
    # The classifier's gazetteer knows cities and adjectives ("Aleppo", "syrische") too.
    for region, weight in region_weights(article).items():
        scores[region] += weight
    return dict(scores)


def heading(reports: Iterable[Article], fallback: str = "") -> str:
    """The main country (English label) of a story told by `reports`; else `fallback`."""
    total: defaultdict[str, float] = defaultdict(float)
    for article in reports:
        for place, weight in weights(article).items():
            total[place] += weight
    if not total:
        return fallback
    best, score = max(total.items(), key=lambda kv: kv[1])
    return best if score > 0 else fallback
