"""Configurations bot.cli validated, remembered so the fast paths in bot.entry may use them.

A record is keyed by a hash of everything bot.config.load judges (the file, the `NEWSBOT_*`
environment, the options, which chat tokens are set, and this code); it holds only what the
fast paths need, and never a PostgreSQL URL (it may carry a password).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Settings

# bot.config's DEFAULT_CONFIG_PATH and secret variables (tests/test_entry.py keeps them in step).
DEFAULT_CONFIG_PATH = Path("config/newsbot.toml")
SECRET_VARIABLES = (
    "TELEGRAM_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)

# The modules that decide what a valid configuration is, what is recorded of it and how a
# command line is read for it.
_CODE = tuple(Path(__file__).with_name(name) for name in ("config.py", "remembered.py", "entry.py"))
# How many validated configurations are remembered (tests and scripts use many).
_REMEMBERED = 32


def config_file(config: str | None) -> tuple[Path, bool]:
    """The config file bot.config.load reads, and whether it was named explicitly."""
    explicit = config is not None or "NEWSBOT_CONFIG" in os.environ
    if config is not None:  # even "": typer hands load() Path(""), which is the folder "."
        return Path(config), explicit
    return Path(os.environ.get("NEWSBOT_CONFIG", DEFAULT_CONFIG_PATH)), explicit


def fingerprint(config: Path | str | None, overrides: Mapping[str, Any]) -> str | None:
    """What bot.config.load validates, hashed: the config file, the environment, the options.

    None when the file cannot be read (bot.cli then reports it). The chat tokens count by
    presence only (validation depends on nothing else); only the hash is ever written.
    """
    path, explicit = config_file(None if config is None else str(config))
    try:
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        # The validator and this module: another newsbot version may judge (or record) otherwise.
        code = [hashlib.sha256(module.read_bytes()).hexdigest() for module in _CODE]
    except OSError:
        return None
    given = {
        "code": code,
        "path": str(path.absolute()),
        "explicit": explicit,
        "content": content,
        "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("NEWSBOT_")),
        "secrets": [name for name in SECRET_VARIABLES if os.environ.get(name, "").strip()],
        "overrides": overrides,
    }
    return hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode()).hexdigest()


def cache_file() -> Path:
    """Where validated configurations are remembered: bot.lemmas.cache_dir() (the test checks)."""
    explicit = os.environ.get("NEWSBOT_CACHE_DIR")
    if explicit:
        return Path(explicit) / "settings.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "newsbot" / "settings.json"


def remembered() -> dict[str, dict[str, Any]]:
    """Every remembered record by key; empty when the cache is missing or unreadable."""
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(key: str | None, cfg: Settings) -> None:
    """Record the settings bot.cli validated for input `key`; best effort (a cache)."""
    if key is None:
        return
    url = cfg.storage.url()
    record = {
        # Only SQLite: a PostgreSQL URL may carry a password, and is not written down.
        "sqlite": url if url.startswith("sqlite") else None,
        "folder": str(cfg.articles.folder),
        "max_bytes": cfg.articles.max_file_bytes,
        "languages": list(cfg.articles.languages),
        "alert": cfg.classifier.alert_threshold,
        "digest": cfg.classifier.digest_threshold,
        "model": None
        if cfg.classifier.feedback_model is None
        else str(cfg.classifier.feedback_model),
        "json_logs": cfg.log.format == "json",
    }
    known = remembered()
    if known.get(key) == record:
        return
    known.pop(key, None)
    known[key] = record
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        # Private like the lemma tables beside it (it names the deployment's files).
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(json.dumps(dict(list(known.items())[-_REMEMBERED:])))
        temporary.replace(path)  # atomic: a concurrent reader sees the old or the new file
    except OSError:
        pass


def lookup(key: str | None) -> dict[str, Any] | None:
    """The record remembered for input `key`, if any."""
    record = remembered().get(key) if key is not None else None
    return record if isinstance(record, dict) else None
