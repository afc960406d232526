"""The `newsbot` command line: ingest, classify, ask, digest, run, with stable machine output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from bot import __version__, articles, config, logs, remembered
from bot.models import Article

if TYPE_CHECKING:  # the store's modules load only in the commands that open it
    from bot.catalog import Catalog
    from bot.ledger import Ledger
    from bot.store import Store

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    name="newsbot",
    help="News alerts on war, terrorism, military tension and conflict diplomacy, "
    "with digests and answers in chat.",
    no_args_is_help=True,
    add_completion=False,
    # Markdown: a docstring's wrapped lines are one paragraph in --help, not hard breaks.
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _help_as_flag(get_help_option: Any) -> Any:
    """Wrap typer's help-option factory so `--help` is listed as a flag, not `--help <bool>`."""

    def wrapped(self: Any, ctx: Any) -> Any:
        option = get_help_option(self, ctx)
        if option is not None:
            option.metavar = ""  # as for --version: a flag takes no value
        return option

    return wrapped


for _command_class in (typer.core.TyperCommand, typer.core.TyperGroup):
    # typer 0.29 gives its own help option a `<bool>` type column in every command's help.
    setattr(  # noqa: B010 -- a method replaced on the class, which mypy only allows this way
        _command_class,
        "get_help_option",
        _help_as_flag(_command_class.get_help_option),
    )

err = Console(stderr=True, soft_wrap=True)  # one message, one line: never wrapped
out = Console(highlight=False, soft_wrap=True)  # bot.entry.OUT_CONSOLE (the test compares)


class Format(StrEnum):
    """Output formats."""

    text = "text"
    json = "json"
    jsonl = "jsonl"


class LogFormat(StrEnum):
    """How log lines are written."""

    text = "text"
    json = "json"


class State:
    """Options given before the command, shared by all commands."""

    config_path: Path | None = None
    db: str | None = None
    verbose: int = 0
    log_format: str | None = None
    json_logs: bool = False


state = State()


def settings() -> config.Settings:
    """Load settings once per command; a bad file/key/value exits 2 naming it."""
    overrides: dict[str, dict[str, Any]] = {}
    if state.db:
        overrides["storage"] = {"database_url": state.db}
    if state.log_format:
        overrides["log"] = {"format": state.log_format}
    try:
        loaded = config.load(state.config_path, overrides=overrides or None)
    except config.ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(logs.redact(str(exc)))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    # bot.entry's fast paths use a configuration only once it was validated here.
    remembered.remember(remembered.fingerprint(state.config_path, overrides), loaded)
    if loaded.log.format == "json" and not state.json_logs:
        # The config file (or NEWSBOT_LOG_FORMAT) asks for JSON: from here on, log lines are.
        logs.setup(state.verbose, logs.json_handler())
        state.json_logs = True
    return loaded


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; database failures become a clear message and exit 1."""
    import asyncio

    import sqlalchemy.exc

    from bot.db import SchemaTooNew

    try:
        return asyncio.run(coro)
    except SchemaTooNew as exc:
        # A deployment problem (an older newsbot on an upgraded database), not a crash.
        fail(str(exc), EXIT_USAGE)
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        fail(f"{type(exc).__name__}: {first}", EXIT_FAILURE)


def existing_database(cfg: config.Settings) -> str:
    """The database URL, for commands that only read: a SQLite file that is not there is an
    error (opening it would create an empty database and report that, misleadingly)."""
    import sqlalchemy as sa

    url = cfg.storage.url()
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            fail(f"no database at {path} (`newsbot run` or `newsbot migrate` creates it)", 1)
    return url


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """Why a file was refused, for one error line: where its first non-UTF-8 byte is."""
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def fail(message: str, code: int) -> NoReturn:
    """Print one `error:` line (secrets redacted) and exit with `code`."""
    err.print(f"[red]error:[/red] {escape(logs.redact(message))}", highlight=False)
    raise typer.Exit(code)


def output_file(path: Path) -> None:
    """Exit 2 with one line unless `path` can be a file: not a folder, in a folder that exists."""
    if path.is_dir():
        fail(f"{path}: is a folder; give a file name", EXIT_USAGE)
    if not path.parent.is_dir():
        fail(f"{path}: no folder {path.parent}", EXIT_USAGE)


def _version(value: bool) -> None:
    if value:
        out.print(f"newsbot {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: config/newsbot.toml, or $NEWSBOT_CONFIG).",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL, e.g. sqlite:///data/newsbot.sqlite3 or "
            "postgresql://user@host/db (default: $NEWSBOT_DATABASE_URL, then the config).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More log output (-vv for debug).",
            # A counted flag takes no value: no "<int> [default: 0]" in the help.
            metavar="",
            show_default=False,
        ),
    ] = 0,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="Log lines as text or json, one object per line (default: log.format).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version.", metavar=""
        ),
    ] = False,
) -> None:
    """newsbot: conflict news alerts, digests and answers for Telegram, Slack and the console."""
    state.config_path = config_path
    state.db = db
    state.verbose = verbose
    state.log_format = log_format.value if log_format is not None else None
    state.json_logs = log_format is LogFormat.json
    # Third-party loggers are chatty at INFO (every HTTP request): WARNING unless -vv. Every
    # line and traceback passes the secret filter (the bot token is in Telegram's URLs).
    logs.setup(
        verbose,
        logs.json_handler()
        if state.json_logs
        else RichHandler(console=err, show_path=False, markup=False, rich_tracebacks=False),
    )


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files, folders or JSON Lines files to read.")
    ],
    output: Annotated[
        Format, typer.Option("--format", "-f", help="text, or json (= jsonl): one JSON object.")
    ] = Format.text,
) -> None:
    """Store articles from files and folders; print counts of new, duplicate and rejected ones."""
    cfg = settings()

    async def go() -> Any:
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            return await _ingest(cfg, store.catalog, store.ledger, paths)

    report = run_async(go())
    counts = {
        "new": report.counts.new,
        "updated": report.counts.updated,
        "duplicate": report.counts.duplicate,
        "rejected": len(report.rejected),
    }
    if output is Format.text:
        out.print(" ".join(f"{key}={value}" for key, value in counts.items()))
    else:
        print(json.dumps(counts))
    if report.read == 0 and report.rejected:
        raise typer.Exit(EXIT_FAILURE)


@app.command("classify")
def classify_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Files, folders or JSON Lines files to classify.")
    ],
    output: Annotated[
        Format,
        typer.Option("--format", "-f", help="text, or jsonl (= json): one JSON object a line."),
    ] = Format.text,
) -> None:
    """Classify articles without storing them: one verdict per article, in input order."""
    # Only what classifying needs is imported: this command is timed with its start-up.
    from bot.classify import classify, verdict_line

    cfg = settings()
    limits, model = cfg.classifier.thresholds(), None
    if cfg.classifier.feedback_model is not None:
        from bot.learn import load_current  # numpy: only when a model is configured

        model = load_current(cfg.classifier.feedback_model)
    rejected = seen = 0
    write = sys.stdout.write
    for item in articles.read(paths, cfg.articles.max_file_bytes, cfg.articles.languages):
        if isinstance(item, articles.Rejection):
            rejected += 1
            err.print(f"rejected {item.where}: {item.reason}", markup=False, highlight=False)
            continue
        seen += 1
        write(verdict_line(item, classify(item, limits, model), output.value))
    if seen == 0 and rejected:
        raise typer.Exit(EXIT_FAILURE)


class _Rejections(logging.Filter):
    """Drops the ingest job's "rejected …" log lines: the command prints each one itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("rejected ")


async def _ingest(cfg: config.Settings, catalog: Catalog, ledger: Ledger, paths: list[Path]) -> Any:
    """Ingest `paths` into `catalog`; print each rejection once on stderr; return the report."""
    from bot import jobs
    from bot.learn import load_current

    quiet = _Rejections()
    logging.getLogger("bot.jobs").addFilter(quiet)
    try:
        report = await jobs.ingest(
            paths,
            catalog,
            thresholds=cfg.classifier.thresholds(),
            max_bytes=cfg.articles.max_file_bytes,
            languages=cfg.articles.languages,
            model=load_current(cfg.classifier.feedback_model),
        )
    finally:
        logging.getLogger("bot.jobs").removeFilter(quiet)
    # `ingest` stores; it never alerted (an archive loaded this way is no news): its articles
    # count as routed, so a running service's routing sweep leaves them alone.
    await ledger.enqueue_many([], routed=[article.id for article, _ in report.changed])
    for rejection in report.rejected:
        err.print(f"rejected {rejection.where}: {rejection.reason}", markup=False, highlight=False)
    return report


async def _read_folder(cfg: config.Settings, store: Store) -> None:
    """Read the article folder first, as the service does (files identified by their path), so
    `ask` and `digest` on a fresh clone see the seed, and `run` later finds nothing new."""
    problem = articles.folder_problem(cfg.articles.folder)
    if problem is not None:
        err.print(f"warning: {problem}", markup=False, highlight=False)
        return
    from bot import folder
    from bot.learn import load_current

    source = folder.FolderSource(
        cfg.articles.folder,
        cfg.classifier.thresholds(),
        max_bytes=cfg.articles.max_file_bytes,
        languages=tuple(cfg.articles.languages),
        settle=0.0,  # one read now, not a watch: nothing to wait for
        model=lambda: load_current(cfg.classifier.feedback_model),
    )
    quiet = _Rejections()
    logging.getLogger("bot.folder").addFilter(quiet)
    try:
        report = await folder.scan(
            source,
            store.sources,
            store.catalog,
            store.subscriptions,
            store.ledger,
            folder.FolderState(),
        )
    finally:
        logging.getLogger("bot.folder").removeFilter(quiet)
    for rejection in report.ingest.rejected:
        err.print(f"rejected {rejection.where}: {rejection.reason}", markup=False, highlight=False)


@app.command()
def ask(
    question: Annotated[
        str | None, typer.Argument(help="The question, in English or German.")
    ] = None,
    article: Annotated[
        str | None, typer.Option("--article", "-a", help="Answer from this article id only.")
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            "-q",
            help='JSON Lines file of {"id", "question", "article"?}; with --format jsonl.',
        ),
    ] = None,
    output: Annotated[
        Format, typer.Option("--format", "-f", help="text, json or jsonl.")
    ] = Format.text,
) -> None:
    """Answer a question from the stored articles (or one article with --article)."""
    if (question is None) == (questions is None):
        fail("give either a QUESTION or --questions FILE", EXIT_USAGE)
    if question is not None and not question.strip():
        fail("the QUESTION is empty", EXIT_USAGE)
    batch: list[dict[str, Any]] = []
    malformed = 0
    if questions is not None:
        try:
            lines = questions.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            fail(f"{questions}: {reason}", EXIT_USAGE)
        if not any(line.strip() for line in lines):
            fail(f"{questions}: no questions (one JSON object a line: id, question)", EXIT_USAGE)
        first_line: dict[str, int] = {}  # each id, and the line it was first given on
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("question"), str):
                    raise ValueError("needs a string field 'question'")
                if not record["question"].strip():
                    raise ValueError("the question is empty")
                # Answers are matched to questions by id: without one (or with another line's)
                # an answer line cannot be told apart.
                given = record.get("id")
                if not isinstance(given, str | int) or isinstance(given, bool) or given == "":
                    raise ValueError("needs an 'id' (a string or a number) to match its answer")
                if str(given) in first_line:
                    raise ValueError(
                        f"duplicate id {given!r} (first on line {first_line[str(given)]})"
                    )
                first_line[str(given)] = number
            except ValueError as exc:
                # One bad line costs its own answer, not the others'.
                malformed += 1
                err.print(f"error: {questions}:{number}: {exc}", markup=False, highlight=False)
                continue
            batch.append(record)
        if not batch:
            raise typer.Exit(EXIT_USAGE)
    else:
        batch.append({"question": question, "article": article})
    cfg = settings()

    async def migrate() -> Any:  # the engine's URL, password included
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            await _read_folder(cfg, store)
            return store.engine.url

    from bot import search

    # The store's full-text index answers: nothing is rebuilt per call.
    index = search.StoreIndex(run_async(migrate()))
    try:
        missing = _answer_batch(batch, index, article, output, cfg.chat.default_language)
    finally:
        index.close()
    if (missing and missing == len(batch)) or malformed:
        raise typer.Exit(EXIT_FAILURE)


def _answer_batch(
    batch: list[dict[str, Any]], index: Any, article: str | None, output: Format, lang: str
) -> int:
    """Answer each question of a batch; return how many named an article that is not stored."""
    import dataclasses

    from bot import qa
    from bot.question import evident_lang

    missing = 0
    for record in batch:
        scope = record.get("article") or article
        if scope and index.get(scope) is None:
            missing += 1
            err.print(f"warning: article {scope!r} is not in the store", highlight=False)
        answer = qa.answer(record["question"], index, article_id=scope)
        if answer.lang != lang and evident_lang(record["question"]) is None:
            # As in chats: the question's language if it shows one of ours, else the default.
            answer = dataclasses.replace(answer, lang=lang)
        result = qa.answer_record(answer)
        if "id" in record:
            result = {"id": record["id"], **result}
        if output is Format.text:
            from bot.chat.render import plain

            out.print(plain(answer), markup=False)
        else:
            print(json.dumps(result, ensure_ascii=False))
    return missing


@app.command()
def digest() -> None:
    """Print the digest a chat would receive now."""
    cfg = settings()

    async def go() -> str:
        from bot import qa
        from bot.chat.render import plain
        from bot.conversation import Conversation
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            await _read_folder(cfg, store)
            conversation = Conversation(
                store.sources,
                store.catalog,
                store.subscriptions,
                store.ledger,
                qa.Index.build([]),
                cfg,
            )
            return plain(await conversation.digest(None, cfg.chat.default_language))

    out.print(run_async(go()), markup=False)


@app.command()
def train(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the model (default: classifier.feedback_model, "
            "else data/feedback-model.json).",
            show_default=False,
        ),
    ] = None,
    min_examples: Annotated[
        int, typer.Option(help="Refuse to train on fewer judged articles than this.")
    ] = 20,
) -> None:
    """Train the feedback model on this deployment's 👍/👎 judgements of alerts."""
    cfg = settings()
    if output is not None:
        output_file(output)  # before training: `--output /tmp` wrote `/.tmp.partial`

    async def load() -> list[tuple[Article, bool]]:
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            return await store.catalog.feedback_examples()

    examples = run_async(load())
    positives = sum(relevant for _, relevant in examples)
    if len(examples) < min_examples or positives in (0, len(examples)):
        err.print(
            f"error: {len(examples)} judged articles ({positives} relevant); need at least "
            f"{min_examples}, with both relevant and not relevant ones"
        )
        raise typer.Exit(EXIT_FAILURE)
    from bot.learn import load_current, retrain

    path = output or cfg.classifier.feedback_model or cfg.storage.data_dir / "feedback-model.json"
    outcome = retrain(examples, load_current(path))
    if not outcome.accepted or outcome.model is None:
        # A model that scores worse on judgements it never saw would make the bot worse.
        out.print(
            f"kept {path if path.exists() else 'the built-in scorer'}: the new model scored "
            f"F1 {outcome.new_score[0]:.3f} on the held-back judgements, the current one "
            f"{outcome.old_score[0]:.3f}"
        )
        return
    try:
        outcome.model.install(path)
    except OSError as exc:
        fail(f"{path}: cannot write the model: {exc.strerror or exc}", EXIT_FAILURE)
    out.print(f"trained on {len(examples)} articles ({positives} relevant); saved {path}")
    if cfg.classifier.feedback_model is None:
        out.print(f'set classifier.feedback_model = "{path}" in the config to use it')


feedback_app = typer.Typer(
    help='Import or export 👍/👎 judgements (JSON Lines of {"id", "relevant"}).',
    no_args_is_help=True,
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
def feedback_import(
    file: Annotated[
        Path, typer.Argument(help='JSON Lines: {"id": ARTICLE_ID, "relevant": true|false}.')
    ],
) -> None:
    """Record judgements of stored articles, as if a user had pressed 👍/👎 on them."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        err.print(f"error: {file}: {exc.strerror}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        err.print(f"error: {file}: {_not_utf8(exc)}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    judgements: list[tuple[str, bool]] = []
    malformed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("expected a JSON object")
            article_id, relevant = record.get("id"), record.get("relevant")
            if not isinstance(article_id, str | int) or not isinstance(relevant, bool):
                raise ValueError('needs "id" (string) and "relevant" (true or false)')
        except ValueError as exc:
            malformed += 1
            err.print(f"{file}:{number}: {exc}", markup=False, highlight=False)
            continue
        judgements.append((str(article_id), relevant))
    cfg = settings()

    async def go() -> tuple[int, list[str]]:
        from bot.models import ChatRef
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            return await store.catalog.import_feedback(judgements, ChatRef("import", "cli"))

    imported, unknown = run_async(go())
    for article_id in unknown[:20]:
        err.print(f"unknown article id: {article_id}", markup=False, highlight=False)
    if len(unknown) > 20:
        err.print(f"… and {len(unknown) - 20} more unknown ids", markup=False, highlight=False)
    out.print(f"imported={imported} unknown={len(unknown)} malformed={malformed}")
    if imported == 0 and (unknown or malformed):
        raise typer.Exit(EXIT_FAILURE)


@feedback_app.command("export")
def feedback_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print every judgement as JSON Lines (re-importable with `newsbot feedback import`)."""
    cfg = settings()
    if output is not None:
        output_file(output)

    async def go() -> list[dict[str, Any]]:
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            return await store.catalog.export_feedback()

    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in run_async(go()))
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"{output}: cannot write: {exc.strerror or exc}", EXIT_FAILURE)


@app.command()
def migrate() -> None:
    """Upgrade the database schema to this version of newsbot (`run` also does it at start)."""
    cfg = settings()

    async def go() -> int:
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            return await store.migrate()

    out.print(f"database schema at version {run_async(go())}")


@app.command("export")
def export_command(
    output: Annotated[
        Path | None,
        typer.Argument(help="File to write (JSON Lines); default: standard output."),
    ] = None,
) -> None:
    """Write the whole deployment: articles, verdicts, stories, chats, sources, ledger, feedback."""
    cfg = settings()
    url = existing_database(cfg)

    async def go() -> dict[str, int]:
        from bot import transfer
        from bot.store import Store

        async with Store.open(url) as store:
            if output is None:
                return await transfer.export(store.engine, sys.stdout)
            with output.open("w", encoding="utf-8") as handle:
                return await transfer.export(store.engine, handle)

    counts = run_async(go())
    err.print(
        "exported " + (", ".join(f"{n} {table}" for table, n in counts.items() if n) or "nothing"),
        markup=False,
        highlight=False,
    )


@app.command("import")
def import_command(
    source: Annotated[Path, typer.Argument(help="A file written by `newsbot export`.")],
) -> None:
    """Load an export into this (empty) database, e.g. to move from SQLite to PostgreSQL."""
    cfg = settings()
    from bot import transfer

    async def go() -> dict[str, int]:
        from bot.store import Store

        async with Store.open(cfg.storage.url()) as store:
            with source.open(encoding="utf-8") as handle:
                records = transfer.read_records(handle, str(source))
                return await transfer.import_rows(store.engine, records)

    try:
        counts = run_async(go())
    except transfer.TransferError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILURE) from None
    except UnicodeDecodeError as exc:
        err.print(f"error: {source}: {_not_utf8(exc)}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    out.print("imported " + ", ".join(f"{n} {table}" for table, n in counts.items() if n))


@app.command()
def status(
    output: Annotated[
        Format, typer.Option("--format", "-f", help="text, or json (= jsonl): one JSON object.")
    ] = Format.text,
) -> None:
    """Show sources, subscriptions and the delivery ledger of this deployment's database."""
    cfg = settings()
    url = existing_database(cfg)

    async def go() -> dict[str, Any]:
        from bot.store import Store

        async with Store.open(url) as store:
            sources = await store.sources.active()
            subscriptions = await store.subscriptions.active()
            pending = await store.ledger.deliveries("pending")
            failed = await store.ledger.deliveries("failed")
            backend = store.engine.dialect.name
            if backend == "sqlite":
                leader: str | None = "this database has one instance (SQLite)"
            else:
                from bot.leader import current_leader

                leader = await current_leader(store.engine) or "none (no instance is running)"
        return {
            "database": backend,
            "leader": leader,
            "sources": [
                {
                    "id": s.id,
                    "name": s.name,
                    "url": s.url.split("?", 1)[0],
                    "added_by": s.added_by,
                    "owners": sorted(s.owners),
                    "last_fetched_at": s.state.last_fetched.isoformat()
                    if s.state.last_fetched
                    else None,
                    "failures": s.state.failures,
                    "last_error": s.state.last_error,
                }
                for s in sources
            ],
            "subscriptions": {
                platform: sum(1 for s in subscriptions if s.chat.platform == platform)
                for platform in sorted({s.chat.platform for s in subscriptions})
            },
            "deliveries": {
                "pending": len(pending),
                "oldest_pending": min((str(r["created_at"]) for r in pending), default=None),
                "failed": len(failed),
                "failed_recently": [
                    {"kind": r["kind"], "platform": r["platform"], "error": r["last_error"]}
                    for r in failed[-5:]
                ],
            },
        }

    report = run_async(go())
    if output is not Format.text:
        print(json.dumps(report, ensure_ascii=False))
        return
    lines = [f"database: {report['database']}"]
    if report["leader"]:
        lines.append(f"leader: {report['leader']}")
    lines.append(f"sources: {len(report['sources'])}")
    for s in report["sources"]:
        fetched = s["last_fetched_at"] or "never"
        error = f"; last error: {s['last_error']}" if s["last_error"] else ""
        lines.append(f"  {s['id']}. {s['name'] or s['url']} — last fetch {fetched}{error}")
    subscribed = ", ".join(f"{p} {n}" for p, n in report["subscriptions"].items()) or "none"
    lines.append(f"subscriptions: {subscribed}")
    owed = report["deliveries"]
    oldest = f" (oldest {owed['oldest_pending']})" if owed["oldest_pending"] else ""
    lines.append(f"deliveries: {owed['pending']} pending{oldest}, {owed['failed']} failed")
    for r in owed["failed_recently"]:
        lines.append(f"  failed {r['platform']} {r['kind']}: {r['error']}")
    out.print("\n".join(lines), markup=False)


@app.command()
def run() -> None:
    """Run the service: watch sources, post alerts and digests, answer questions.

    Without chat tokens in the environment this is the console chat: it prints the current
    digest, then reads commands (/help, /digest, /subscribe …) and questions from stdin, and
    exits at end of input.
    """
    from bot import app as service
    from bot.chat import StartError

    cfg = settings()
    try:
        code = run_async(service.run(cfg))
    except StartError as exc:
        fail(str(exc), EXIT_USAGE)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `newsbot` console script."""
    app()


if __name__ == "__main__":
    main()
