"""The `newsbot` entry point: `newsbot classify` without loading the full command line.

`newsbot classify` is timed with its start-up, and typer, rich and pydantic take longer to
import than classifying a thousand articles. This module handles the plain forms of that
command itself (global `--config/-c`, `--db`, `-v`; `classify [--format text|jsonl] PATH...`)
with only the standard library, the article reader and the classifier. It checks the config
keys it uses as strictly as bot.config does; anything else — another command, `--help`, an
unknown option, a config it cannot vouch for — goes to bot.cli, which reports it properly.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# bot.config's DEFAULT_CONFIG_PATH and sections (tests/test_entry.py keeps them in step).
DEFAULT_CONFIG_PATH = Path("config/newsbot.toml")
SECTIONS = frozenset(
    (
        "storage",
        "articles",
        "classifier",
        "digest",
        "sources",
        "delivery",
        "chat",
        "telegram",
        "slack",
        "ops",
        "redis",
        "log",
    )
)
ARTICLES_KEYS = frozenset(("folder", "max_file_bytes", "languages", "watch", "settle_seconds"))
CLASSIFIER_KEYS = frozenset(
    ("alert_threshold", "digest_threshold", "feedback_model", "retrain_min_judgements")
)


class _Slow(Exception):
    """The fast path cannot vouch for this invocation: bot.cli handles it."""


def _options(argv: Sequence[str]) -> tuple[Path | None, str, list[Path]]:
    """(config path, format, paths) of a plain `classify` invocation, else _Slow."""
    config: Path | None = None
    args = list(argv)
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in ("--config", "-c", "--db") and args:
            value = args.pop(0)
            config = Path(value) if flag != "--db" else config
        elif flag.startswith("--config="):
            config = Path(flag.split("=", 1)[1])
        elif flag.startswith("--db=") or flag in ("-v", "-vv", "--verbose"):
            continue
        else:
            raise _Slow
    if not args or args.pop(0) != "classify":
        raise _Slow
    output = "text"
    paths: list[Path] = []
    while args:
        arg = args.pop(0)
        if arg in ("--format", "-f") and args:
            output = args.pop(0)
        elif arg.startswith("--format="):
            output = arg.split("=", 1)[1]
        elif arg == "--":
            paths.extend(Path(a) for a in args)
            break
        elif arg.startswith("-"):
            raise _Slow
        else:
            paths.append(Path(arg))
    if output not in ("text", "jsonl") or not paths:
        raise _Slow
    return config, output, paths


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _Slow
    return float(value)


def _settings(config: Path | None) -> dict[str, Any]:
    """The keys classify uses, checked; _Slow for anything bot.config would refuse."""
    explicit = config is not None or "NEWSBOT_CONFIG" in os.environ
    path = config or Path(os.environ.get("NEWSBOT_CONFIG", DEFAULT_CONFIG_PATH))
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            raise _Slow from None
    elif explicit:
        raise _Slow
    if not set(data) <= SECTIONS or not all(isinstance(v, dict) for v in data.values()):
        raise _Slow
    articles, classifier = data.get("articles", {}), data.get("classifier", {})
    if not set(articles) <= ARTICLES_KEYS or not set(classifier) <= CLASSIFIER_KEYS:
        raise _Slow
    languages = articles.get("languages", ["de", "en"])
    # Only what bot.config accepts; anything else gets its one-line error from the full path.
    if not isinstance(languages, list) or not languages or not set(languages) <= {"de", "en"}:
        raise _Slow
    max_bytes = articles.get("max_file_bytes", 5_000_000)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise _Slow
    alert = _number(classifier, "alert_threshold", 0.8, 0.0, 1.0)
    digest = _number(classifier, "digest_threshold", 0.5, 0.0, 1.0)
    model = classifier.get("feedback_model")
    if alert < digest or (model is not None and not isinstance(model, str)):
        raise _Slow
    return {
        "languages": tuple(languages),
        "max_bytes": max_bytes,
        "alert": alert,
        "digest": digest,
        "model": Path(model) if model else None,
    }


def classify_fast(argv: Sequence[str]) -> int | None:
    """Run a plain `newsbot classify`; its exit code, or None when bot.cli must handle argv."""
    try:
        config, output, paths = _options(argv)
        cfg = _settings(config)
    except _Slow:
        return None
    from bot import articles
    from bot.classify import classify, verdict_line
    from bot.models import Thresholds

    limits = Thresholds(cfg["alert"], cfg["digest"])
    model = None
    if cfg["model"] is not None:
        from bot.learn import load_current  # numpy: only when a model is configured

        model = load_current(cfg["model"])
    rejected = seen = 0
    write = sys.stdout.write
    for item in articles.read(paths, cfg["max_bytes"], cfg["languages"]):
        if isinstance(item, articles.Rejection):
            rejected += 1
            sys.stderr.write(f"rejected {item.where}: {item.reason}\n")
            continue
        seen += 1
        write(verdict_line(item, classify(item, limits, model), output))
    return 1 if seen == 0 and rejected else 0


def main() -> None:
    """Entry point of the `newsbot` console script."""
    code = classify_fast(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from bot import cli

    cli.main()
