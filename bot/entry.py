"""The `newsbot` entry point: `newsbot classify` and `newsbot ask` without the full command line.

Both commands are timed with their start-up, and typer, rich, pydantic and SQLAlchemy take
longer to import than classifying a thousand articles or answering a question. This module runs
their plain forms itself with the standard library, the article reader, the classifier and the
answerer. It parses only the options bot.cli declares for them (tests/test_entry.py compares
the tables below with the typer app) and uses a configuration only once bot.cli has validated
exactly that input (file, environment, options): `settings()` there records what it accepted.
Anything else — another command, `--help`, `-v`, a bad option, a config not validated yet, a
store that needs migrating, an article folder with new, edited, deleted or rejected files —
goes to bot.cli, which reports it with its own texts and exit codes.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from bot import remembered

# The schema version bot.schema.MIGRATIONS brings a database to (the test keeps it in step).
SCHEMA_VERSION = 12
# Options taking a value, by flag: the parameter name bot.cli gives it. Global ones come before
# the command; flags that take no value (-v, --version, --help) are left to bot.cli.
GLOBAL_OPTIONS = {"--config": "config_path", "-c": "config_path", "--db": "db"}
COMMAND_OPTIONS = {
    "classify": {"--format": "output", "-f": "output"},
    "ask": {
        "--article": "article",
        "-a": "article",
        "--questions": "questions",
        "-q": "questions",
        "--format": "output",
        "-f": "output",
    },
}
# bot.cli's output console: rich as configured there (a plain print could differ).
OUT_CONSOLE: dict[str, Any] = {"highlight": False, "soft_wrap": True}


class _Slow(Exception):
    """The fast path cannot vouch for this invocation: bot.cli handles it."""


def _parse(argv: Sequence[str]) -> tuple[dict[str, str], str, dict[str, str], list[str]]:
    """(global options, command, its options, its arguments) of a plain invocation, else _Slow."""
    args = list(argv)
    found: dict[str, str] = {}

    def option(arg: str, table: Mapping[str, str], into: dict[str, str]) -> bool:
        flag, equals, value = arg.partition("=")
        if flag not in table or (equals and not flag.startswith("--")):
            return False
        if not equals:
            if not args or args[0].startswith("-"):
                raise _Slow  # a missing value: bot.cli says so
            value = args.pop(0)
        into[table[flag]] = value  # given twice: the last one counts, as in click
        return True

    while args and args[0].startswith("-"):
        if not option(args.pop(0), GLOBAL_OPTIONS, found):
            raise _Slow
    if not args or args[0] not in COMMAND_OPTIONS:
        raise _Slow
    command = args.pop(0)
    options: dict[str, str] = {}
    positional: list[str] = []
    while args:
        arg = args.pop(0)
        if arg == "--":
            positional.extend(args)
            break
        if arg.startswith("-") and arg != "-":
            if not option(arg, COMMAND_OPTIONS[command], options):
                raise _Slow
        else:
            positional.append(arg)
    return found, command, options, positional


def _settings(found: Mapping[str, str]) -> dict[str, Any]:
    """The settings bot.cli validated for this very input, else _Slow."""
    overrides = {"storage": {"database_url": found["db"]}} if found.get("db") else {}
    record = remembered.lookup(remembered.fingerprint(found.get("config_path"), overrides))
    if record is None:
        raise _Slow
    return record


def classify_fast(argv: Sequence[str]) -> int | None:
    """Run a plain `newsbot classify`; its exit code, or None when bot.cli must handle argv."""
    try:
        found, command, options, paths = _parse(argv)
        output = options.get("output", "text")
        if command != "classify" or output not in ("text", "jsonl") or not paths:
            raise _Slow
        cfg = _settings(found)
    except _Slow:
        return None
    from bot import articles
    from bot.classify import classify, verdict_line
    from bot.models import Thresholds

    limits = Thresholds(cfg["alert"], cfg["digest"])
    model = None
    if cfg["model"] is not None:
        from bot.learn import load_current  # numpy: only when a model is configured

        model = load_current(Path(cfg["model"]))
    rejected = seen = 0
    write = sys.stdout.write
    for item in articles.read([Path(p) for p in paths], cfg["max_bytes"], cfg["languages"]):
        if isinstance(item, articles.Rejection):
            rejected += 1
            sys.stderr.write(f"rejected {item.where}: {item.reason}\n")
            continue
        seen += 1
        write(verdict_line(item, classify(item, limits, model), output))
    return 1 if seen == 0 and rejected else 0


def _questions(options: Mapping[str, str], positional: Sequence[str]) -> list[dict[str, Any]]:
    """The batch bot.cli's `ask` would answer, when it would print no error about it."""
    if len(positional) > 1 or (not positional) == ("questions" not in options):
        raise _Slow
    if positional:
        if not positional[0].strip():
            raise _Slow
        return [{"question": positional[0], "article": options.get("article")}]
    try:
        lines = Path(options["questions"]).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise _Slow from None
    batch: list[dict[str, Any]] = []
    ids: set[Any] = set()
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise _Slow from None
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise _Slow
        if not record["question"].strip() or not isinstance(record.get("article", ""), str | None):
            raise _Slow
        if "id" not in record or json.dumps(record["id"]) in ids:
            raise _Slow  # bot.cli names the line without an id, or with a repeated one
        ids.add(json.dumps(record["id"]))
        batch.append(record)
    if not batch:
        raise _Slow
    return batch


def _folder_files(folder: Path, max_bytes: int, languages: Sequence[str]) -> list[tuple[str, str]]:
    """The folder's articles as bot.cli would read them, (source file, content hash) each, or
    _Slow for anything it would report (a rejected file or record, a folder that is not there)."""
    from bot import articles

    if articles.folder_problem(folder) is not None:
        raise _Slow  # bot.cli warns
    found: list[tuple[str, str]] = []
    key = articles.folder_key(folder)
    for path in articles.files([folder]):
        try:
            items = list(articles.read([path], max_bytes, languages, within=folder))
        except Exception:  # bot.cli reports it in its own words
            raise _Slow from None
        for item in items:
            if isinstance(item, articles.Rejection):
                raise _Slow
            # The source bot.folder stores (a record's own `source` field stays its own).
            source = item.source if item.source and item.source != str(path) else None
            source = source or articles.file_source(folder, path, key)
            found.append((source, articles.content_hash(item.title, item.text)))
    return found


def _store_ready(database: str, cfg: Mapping[str, Any]) -> None:
    """_Slow unless opening the store would change nothing: the schema is current, every file
    in the article folder is stored as it is now and no stored file is gone (bot.cli's `ask`
    reads the folder first, and sweeps the articles of deleted files)."""
    if not Path(database).is_file():
        raise _Slow  # bot.cli creates it (or reports what is missing)
    folder = Path(cfg["folder"])
    from bot import articles

    documents = _folder_files(folder, cfg["max_bytes"], cfg["languages"])
    # This folder's own files only, as bot.folder sweeps them (this host, its resolved path).
    prefix = articles.folder_key(folder) + "/"
    try:
        with closing(sqlite3.connect(database)) as conn:
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise _Slow
            stored: set[str] = set()
            for source, digest in documents:
                # Read again, the same content is a duplicate; it changes nothing if this file
                # is already one of the sources that carried it.
                row = conn.execute(
                    "SELECT 1 FROM articles a WHERE a.content_hash = ? AND (a.source = ? OR "
                    "EXISTS (SELECT 1 FROM article_sources s WHERE s.article_id = a.id "
                    "AND s.source = ?))",
                    (digest, source, source),
                ).fetchone()
                if row is None:
                    raise _Slow  # new or edited: stored (and classified) first
                stored.add(source)
            # The folder's sweep would delete the stored articles of its deleted files.
            files = conn.execute(
                "SELECT source FROM articles WHERE substr(source, 1, ?) = ? "
                "UNION SELECT source FROM article_sources WHERE substr(source, 1, ?) = ?",
                (len(prefix), prefix, len(prefix), prefix),
            ).fetchall()
            if any(source not in stored for (source,) in files):
                raise _Slow
    except sqlite3.Error:
        raise _Slow from None


def ask_fast(argv: Sequence[str]) -> int | None:
    """Run a plain `newsbot ask` on a SQLite store; its exit code, or None for bot.cli."""
    try:
        found, command, options, positional = _parse(argv)
        output = options.get("output", "text")
        if command != "ask" or output not in ("text", "json", "jsonl"):
            raise _Slow
        batch = _questions(options, positional)
        cfg = _settings(found)
        if cfg["sqlite"] is None or cfg["json_logs"]:
            raise _Slow
        from bot import qa, search

        database = search.sqlite_file(cfg["sqlite"])
        if database is None:
            raise _Slow  # in memory, or with options: SQLAlchemy's engine
        _store_ready(database, cfg)
    except _Slow:
        return None
    with search.StoreIndex(cfg["sqlite"]) as index:
        scopes = {s for r in batch if (s := r.get("article") or options.get("article"))}
        if any(index.get(scope) is None for scope in sorted(scopes)):
            return None  # bot.cli warns about each, in order
        answers = [
            (
                record,
                qa.answer(
                    record["question"],
                    index,
                    article_id=record.get("article") or options.get("article"),
                ),
            )
            for record in batch
        ]
    if output == "text":
        from rich.console import Console

        from bot.chat.render import plain

        console = Console(**OUT_CONSOLE)
        for _, answer in answers:
            console.print(plain(answer), markup=False)
        return 0
    for record, answer in answers:
        result = qa.answer_record(answer)
        if "id" in record:
            result = {"id": record["id"], **result}
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def main() -> None:
    """Entry point of the `newsbot` console script."""
    argv = sys.argv[1:]
    code = classify_fast(argv)
    if code is None:
        code = ask_fast(argv)
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from bot import cli

    cli.main()
