"""Read article files (.txt .md .html .json .jsonl) into Articles; bad input gets a reason."""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import socket
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from bot import lang as language
from bot.models import Article

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl")
TITLE_MAX = 200

_DATE_LINE = re.compile(r"\A\s*date\s+(\d{4}-\d{2}(?:-\d{2})?)\b[ \t]*\n?", re.IGNORECASE)
# Wire-copy dateline: "Brüssel (dpa) –", "Wien (APA) -", "BERLIN, 3. Mai (Reuters) -", "Wien –".
_DATELINE = re.compile(
    r"\A(?P<place>[A-ZÄÖÜ][\w.\-/ ]{1,40}?)(?:,[^()\n–—]{1,30})?\s*"
    r"(?:\((?P<agency>[A-Za-z][\w./ -]{0,20})\)\s*)?[–—]\s+|"
    r"\A(?P<place2>[A-ZÄÖÜ][\w.\-/ ]{1,40}?)\s*\((?P<agency2>[A-Za-z][\w./ -]{0,20})\)\s*[-–—]\s+"
)
# A sentence ends at . ! ? (optionally followed by a closing quote) before whitespace and a capital,
# digit or quote. Short tokens such as "Dr." or "z.B." are not sentence ends.
_SENTENCE_END = re.compile(
    r"(?<!\b[A-Za-zÄÖÜäöü])(?<!\b[A-Z][a-z])(?<!\bca)(?<!\bvs)[.!?][»«\"'”]?(?=\s+[\"„«»“A-ZÄÖÜ0-9])"
)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"\A#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SPACE = re.compile(r"\s+")


class BadInput(ValueError):
    """A file or record that cannot become an article; the message says why (and on which line)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def check_date(value: str, field: str, line: int | None = None) -> str:
    """`value` if it is an ISO date (YYYY, YYYY-MM, YYYY-MM-DD or a timestamp), else BadInput."""
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            return text
        if re.fullmatch(r"\d{4}-\d{2}", text):
            date.fromisoformat(f"{text}-01")
            return text
        datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return text
    raise BadInput(
        f"field {field!r} is not a date (YYYY, YYYY-MM, YYYY-MM-DD or ISO time): {text[:40]!r}",
        line,
    )


@dataclass(frozen=True, slots=True)
class Rejection:
    """A file or record that was skipped, and why."""

    where: str
    reason: str


def content_hash(title: str, text: str) -> str:
    """A hash of the normalised title and text: the same story in other whitespace is the same."""
    normal = _SPACE.sub(" ", f"{title}\n{text}").strip().casefold()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def first_sentence(text: str, limit: int = TITLE_MAX) -> str:
    """The first sentence of `text`, cut at a word boundary to at most `limit` characters."""
    # Only the opening matters: normalising a whole long article cost most of reading it.
    text = _SPACE.sub(" ", text[: 8 * limit + 100]).strip()
    match = _SENTENCE_END.search(text)
    sentence = text[: match.end()] if match else text
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return sentence


def utf16(data: bytes) -> bool:
    """Whether `data` starts with a UTF-16 byte order mark (Windows "Unicode" text files)."""
    return data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode(data: bytes) -> str:
    """Bytes to text: UTF-16 with BOM, UTF-8 (BOM allowed), else cp1252, else latin-1."""
    if utf16(data):
        # The BOM says which byte order; undecodable pairs become U+FFFD rather than fail.
        return data.decode("utf-16", errors="replace")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def make_article(
    *,
    title: str,
    text: str,
    source: str,
    id: str | None = None,
    lang: str | None = None,
    published: str | None = None,
    place: str | None = None,
    agency: str | None = None,
    url: str | None = None,
    languages: Sequence[str] = language.DEFAULT_LANGUAGES,
) -> Article:
    """Build an Article, filling the id (content hash), title and language when not given."""
    text = text.strip()
    title = _SPACE.sub(" ", title).strip()
    if not text and not title:
        raise BadInput("no text")
    if not title:
        title = first_sentence(text)
    article_id = (id or "").strip() or content_hash(title, text)[:16]
    detected = (lang or "").strip().lower()[:2] or language.detect(f"{title}\n{text}", languages)
    return Article(
        id=article_id,
        title=title,
        text=text,
        lang=detected,
        published=published or None,
        place=place or None,
        agency=agency or None,
        url=url or None,
        source=source,
    )


def parse_text(raw: str, source: str, languages: Sequence[str]) -> Article:
    """A .txt article: optional `date YYYY-MM[-DD]`, optional title line, dateline, body."""
    published = None
    dated = _DATE_LINE.match(raw)
    if dated:
        published = check_date(dated.group(1), "date", raw[: dated.start(1)].count("\n") + 1)
        raw = raw[dated.end() :]
    raw = raw.strip()
    title = ""
    head, sep, rest = raw.partition("\n")
    # A title line stands alone before a blank line, is short and does not end like a sentence.
    if (
        sep
        and rest.startswith(("\n", "\r\n"))
        and len(head.strip()) <= TITLE_MAX
        and not head.rstrip().endswith((".", ":", ";", ","))
        and not _DATELINE.match(head)
    ):
        title, raw = head.strip(), rest.strip()
    place = agency = None
    dateline = _DATELINE.match(raw)
    body = raw
    if dateline:
        place = (dateline.group("place") or dateline.group("place2") or "").strip() or None
        agency = dateline.group("agency") or dateline.group("agency2")
        body = raw[dateline.end() :]
    if not title:
        title = first_sentence(body)
    return make_article(
        title=title,
        text=raw,
        source=source,
        published=published,
        place=place,
        agency=agency,
        languages=languages,
    )


def parse_markdown(raw: str, source: str, languages: Sequence[str]) -> Article:
    """A Markdown article with optional `---` front matter (flat `key: value` lines)."""
    meta: dict[str, str] = {}
    lines: dict[str, int] = {}
    front = _FRONT_MATTER.match(raw)
    if front:
        for number, line in enumerate(front.group(1).splitlines(), start=2):
            key, sep, value = line.partition(":")
            if sep and key.strip():
                name, value = key.strip().lower(), value.strip()
                if value[:1] in ("[", "{"):
                    # Flat `key: value` lines only: a YAML list or map (or a typo such as
                    # `id: [unclosed`) must not become the article's id or title verbatim.
                    raise BadInput(
                        f"field {name!r} is a list or map; front matter takes plain values",
                        number,
                    )
                meta[name] = value.strip("\"'")
                lines[name] = number
        raw = raw[front.end() :]
    for name in ("published", "date"):
        if meta.get(name):
            check_date(meta[name], name, lines[name])
    raw = raw.strip()
    title = meta.get("title", "")
    heading = _MD_HEADING.match(raw)
    if heading:
        title = title or heading.group(1)
        raw = raw[heading.end() :].strip()
    return make_article(
        id=meta.get("id"),
        title=title,
        text=raw,
        source=source,
        lang=meta.get("lang") or meta.get("language"),
        published=meta.get("published") or meta.get("date"),
        place=meta.get("place"),
        agency=meta.get("agency"),
        url=meta.get("url"),
        languages=languages,
    )


def parse_html(raw: str, source: str, languages: Sequence[str]) -> Article:
    """An HTML page: main text and metadata via trafilatura."""
    try:
        import trafilatura  # deferred: lxml and trafilatura cost ~0.3 s to import

        document = trafilatura.bare_extraction(
            raw,
            with_metadata=True,
            include_comments=False,
            # Only dates the page states (meta tags, <time>, JSON-LD): the extensive search
            # turned a "Copyright 2026" footer into "published 2026-01-01".
            date_extraction_params={"original_date": True, "extensive_search": False},
        )
    except ImportError as exc:
        # lxml 6 moved lxml.html.clean out (justext needs it): a broken install, said plainly.
        raise BadInput(f"cannot read HTML (reinstall newsbot): {exc}") from None
    meta: dict[str, Any] = {}
    if document is not None:
        meta = document if isinstance(document, dict) else document.as_dict()
    if not str(meta.get("text") or "").strip():
        raise BadInput("no main text found in HTML")
    title = str(meta.get("title") or "")
    text = str(meta.get("text") or "")
    if title and text.startswith(title):
        text = text[len(title) :]
    return make_article(
        title=title,
        text=text,
        source=source,
        lang=meta.get("language"),
        published=meta.get("date"),
        url=meta.get("url"),
        languages=languages,
    )


def parse_record(record: Any, source: str, languages: Sequence[str]) -> Article:
    """One JSON object with `text` (required), `id`, `title`, `lang`, `published`, `url`."""
    if not isinstance(record, dict):
        raise BadInput(f"expected a JSON object, got {type(record).__name__}")
    fields: dict[str, str | None] = {}
    for key in ("id", "title", "text", "lang", "published", "url", "place", "agency", "source"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            # {"id": 5, "text": 7} was stored as article "5" with the text "7".
            raise BadInput(f"field {key!r} must be a string, not {type(value).__name__}")
        fields[key] = value
    if fields["published"]:
        check_date(fields["published"], "published")
    text = fields["text"]
    if text is None:
        raise BadInput("missing field 'text'")
    if not text.strip():
        raise BadInput("field 'text' is empty")
    return make_article(
        id=fields["id"],
        title=fields["title"] or "",
        text=text,
        source=fields["source"] or source,
        lang=fields["lang"],
        published=fields["published"],
        place=fields["place"],
        agency=fields["agency"],
        url=fields["url"],
        languages=languages,
    )


class _Ids:
    """The ids a file's records used so far: a later record reusing one with other content is
    refused, not stored over the earlier one (an identical repeat is a duplicate, as ever)."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, str]] = {}

    def check(self, item: Article | Rejection, where: str, at: str) -> Article | Rejection:
        """`item`, or its Rejection at `where` when an earlier record (`at` names it) had its id."""
        if isinstance(item, Rejection):
            return item
        digest = content_hash(item.title, item.text)
        first, known = self._first.setdefault(item.id, (at, digest))
        if known != digest:
            reason = f"duplicate id {item.id!r} (first on {first}, with other text)"
            return Rejection(where, reason)
        return item


def parse_bytes(
    data: bytes, name: str, languages: Sequence[str] = language.DEFAULT_LANGUAGES
) -> Iterator[Article | Rejection]:
    """Articles in one file's bytes; bad records of a JSON Lines file become Rejections."""
    if not data.strip():
        raise BadInput("empty file")
    # UTF-16 text has a NUL in every other byte: its BOM tells it from a binary file.
    if b"\x00" in data[:8192] and not utf16(data):
        raise BadInput("binary file (NUL bytes)")
    raw = decode(data)
    if "\x00" in raw[:8192]:
        raise BadInput("binary file (NUL characters)")
    suffix = Path(name).suffix.lower()
    ids = _Ids()
    if suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                where = f"{name}:{number}"
                yield ids.check(_json_line(line, name, where, languages), where, f"line {number}")
    elif suffix == ".json":
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadInput(f"malformed JSON: {exc.msg} at line {exc.lineno}") from None
        except RecursionError:
            # A 200,000-deep array exhausts the parser's stack: poison input, not a crash.
            raise BadInput("JSON nested too deeply") from None
        records = value if isinstance(value, list) else [value]
        for number, record in enumerate(records):
            where = f"{name}[{number}]"
            try:
                yield ids.check(parse_record(record, name, languages), where, f"record {number}")
            except BadInput as exc:
                yield Rejection(where, str(exc))
    elif suffix in (".md", ".markdown"):
        yield parse_markdown(raw, name, languages)
    elif suffix in (".html", ".htm"):
        yield parse_html(raw, name, languages)
    else:
        yield parse_text(raw, name, languages)


def _json_line(line: str, name: str, where: str, languages: Sequence[str]) -> Article | Rejection:
    """One record of a JSON Lines file, or why it cannot be read."""
    try:
        return parse_record(json.loads(line), name, languages)
    except json.JSONDecodeError as exc:
        return Rejection(where, f"malformed JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return Rejection(where, "JSON nested too deeply")
    except BadInput as exc:
        return Rejection(where, str(exc))


def read_jsonl(
    path: Path, max_bytes: int, languages: Sequence[str]
) -> Iterator[Article | Rejection]:
    """A JSON Lines file record by record; a record over `max_bytes` is rejected unread."""
    name = str(path)
    seen = False
    ids = _Ids()
    with _open_regular(path) as handle:
        if utf16(handle.read(2)):
            # Lines of UTF-16 cannot be split on b"\n": the file is read whole (within the limit).
            handle.seek(0)
            data = handle.read(max_bytes + 1)
            if len(data) > max_bytes:
                yield Rejection(name, f"UTF-16 file is over the {max_bytes:,}-byte limit")
                return
            yield from parse_bytes(data, name, languages)
            return
        handle.seek(0)
        number = 0
        while True:
            # Never more than the limit in memory: one huge line cannot exhaust it.
            chunk = handle.readline(max_bytes + 1)
            if not chunk:
                break
            number += 1
            where = f"{name}:{number}"
            if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
                size = len(chunk)
                while chunk and not chunk.endswith(b"\n"):
                    chunk = handle.readline(1 << 20)
                    size += len(chunk)
                yield Rejection(
                    where, f"record is {size:,} bytes, over the {max_bytes:,}-byte limit"
                )
                seen = True
                continue
            if not chunk.strip():
                continue
            seen = True
            if b"\x00" in chunk:
                yield Rejection(where, "binary record (NUL bytes)")
                continue
            record = _json_line(decode(chunk), name, where, languages)
            yield ids.check(record, where, f"line {number}")
    if not seen:
        yield Rejection(name, "empty file")


def folder_key(folder: Path) -> str:
    """Whose files a folder's sources are: `host:/resolved/folder`, the same for every spelling
    of one folder on one machine and different for another folder or another machine's."""
    # No trailing slash (the folder "/" too): its files are `key/relative`, never `host://…`,
    # which would read as a feed URL.
    return f"{socket.gethostname()}:{str(folder.resolve()).rstrip('/')}"


def file_source(folder: Path, path: Path, key: str | None = None) -> str:
    """The stored source of a file read from `folder`: its folder's key and its path in it."""
    try:
        relative = path.relative_to(folder).as_posix()
    except ValueError:
        relative = path.name
    return f"{key or folder_key(folder)}/{relative}"


def folder_problem(folder: Path) -> str | None:
    """Why the article folder cannot be read (missing, or a file), said for a warning line."""
    if folder.is_dir():
        return None
    what = "is not a folder" if folder.exists() else "does not exist"
    return (
        f"article folder {folder} {what} (articles.folder, env NEWSBOT_ARTICLES); "
        "no local articles are read"
    )


def files(paths: Iterable[Path]) -> Iterator[Path]:
    """The article files named by `paths`: files as given, folders searched recursively."""
    for path, _ in _entries(paths):
        yield path


def _entries(paths: Iterable[Path]) -> Iterator[tuple[Path, Path | None]]:
    """Each file with the folder it was found in (None: named explicitly)."""
    for path in paths:
        if path.is_dir():
            yield from (
                (p, path)
                for p in sorted(
                    p
                    for p in path.rglob("*")
                    # Not `is_file()`: a FIFO, device or socket in the folder is named with its
                    # reason by `read` (never opened), as when it is named directly.
                    if p.suffix.lower() in SUFFIXES
                    and not p.name.startswith(".")
                    and p.exists()
                    and not p.is_dir()
                )
            )
        else:
            yield path, None


def outside(folder: Path, path: Path) -> bool:
    """Whether `path` (through its symlinks) is a file outside `folder`."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return True
    except OSError:  # a symlink loop: not a file of the folder either
        return True
    return False


def _regular(path: Path) -> os.stat_result:
    """The file's status, or BadInput when it is not a regular file (FIFO, device, socket)."""
    status = path.stat()
    if stat.S_ISDIR(status.st_mode):
        raise BadInput("is a folder, not an article file")
    if not stat.S_ISREG(status.st_mode):
        # Never opened: reading a FIFO blocks for ever, a device such as /dev/zero never ends.
        raise BadInput("not a regular file (FIFO, device or socket); not read")
    return status


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading, refusing anything that turned out not to be a regular file."""
    # O_NONBLOCK: a file swapped for a FIFO after the check above cannot block the open.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise BadInput("not a regular file (FIFO, device or socket); not read")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _unread(name: str, exc: OSError | BadInput) -> Rejection:
    """The rejection of a file that could not be opened or read whole."""
    if isinstance(exc, FileNotFoundError):
        return Rejection(name, "no such file or folder")
    if isinstance(exc, OSError):
        return Rejection(name, f"cannot read: {exc.strerror or exc}")
    return Rejection(name, str(exc))


def read(
    paths: Iterable[Path],
    max_bytes: int = 5_000_000,
    languages: Sequence[str] = language.DEFAULT_LANGUAGES,
    *,
    within: Path | None = None,
) -> Iterator[Article | Rejection]:
    """Every article in `paths`, in order; each unreadable file or record is a Rejection instead.

    Files found in a folder (and every file when `within` is given) must be inside that folder:
    a symlink to a file elsewhere (`/etc/passwd`) is a Rejection, not an article.
    """
    for path, found_in in _entries(paths):
        name = str(path)
        folder = within or found_in
        if folder is not None and outside(folder, path):
            yield Rejection(name, f"symbolic link to a file outside {folder}; not read")
            continue
        try:
            status = _regular(path)
        except (OSError, BadInput) as exc:
            yield _unread(name, exc)
            continue
        if path.suffix.lower() == ".jsonl":
            # Read record by record: the limit applies to each record, not to the file.
            try:
                yield from read_jsonl(path, max_bytes, languages)
            except (OSError, BadInput) as exc:
                yield _unread(name, exc)
            continue
        try:
            if status.st_size > max_bytes:
                raise BadInput(
                    f"file is {status.st_size:,} bytes, over the {max_bytes:,}-byte limit"
                )
            with _open_regular(path) as handle:
                # At most one byte over the limit: a file growing meanwhile is not read unbounded.
                data = handle.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise BadInput(f"file is over the {max_bytes:,}-byte limit")
        except (OSError, BadInput) as exc:
            yield _unread(name, exc)
            continue
        try:
            yield from parse_bytes(data, name, languages)
        except BadInput as exc:
            yield Rejection(name if exc.line is None else f"{name}:{exc.line}", str(exc))
