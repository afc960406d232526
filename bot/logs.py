"""Logging set-up: secrets redacted from every record and traceback; payload dumps kept out."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from urllib.parse import quote, urlsplit, urlunsplit

from bot.config import SECRET_VARIABLES

REDACTED = "[redacted]"
# Libraries that log at INFO and below on every request, shown only with -vv.
CHATTY = ("httpx", "httpcore", "apscheduler", "telegram", "slack_bolt", "slack_sdk", "aiohttp")
# Loggers whose debug lines dump whole requests, updates or SQL parameters (chat ids, user
# names, message text): INFO at most, at any verbosity.
PAYLOAD_LOGGERS = (
    "telegram.Bot",
    "telegram.ext.ExtBot",
    "telegram.ext.Application",
    "aiosqlite",
    "slack_bolt",
    "slack_sdk",
)
# Loggers that log an exception with its traceback and then raise it, so the caller's one
# line already reports it (PTB's "Can not load invalid JSON data" for an HTML 502 from a
# proxy, with the body, every retry): silent at any verbosity.
RAISING_LOGGERS = ("telegram.request.BaseRequest",)
# Shorter values are no secrets worth hiding, and replacing them would garble ordinary text.
MIN_SECRET_CHARS = 6
# What every LogRecord has; anything else on a record came in through `extra=` (a field).
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def known_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The credential values in the environment (and their URL-encoded forms), longest first."""
    env = os.environ if env is None else env
    values: set[str] = set()
    for name in SECRET_VARIABLES:
        value = env.get(name, "").strip()
        if len(value) >= MIN_SECRET_CHARS:
            values.update({value, quote(value, safe=""), quote(value)})
    return sorted(values, key=len, reverse=True)


def _hex(byte: int) -> str:
    """A regex for one percent-encoded byte, hex digits in either case (`%C3`, `%c3`)."""
    return "%" + "".join(f"[{d.upper()}{d.lower()}]" if d.isalpha() else d for d in f"{byte:02X}")


def secret_pattern(secret: str) -> str:
    """A regex matching `secret` with any of its characters percent-encoded (or JSON-escaped).

    URL builders differ in what they leave unquoted (httpx keeps `:` and `#` in a path but
    quotes a space and `é`), so every character may come either way: `ab cd` is also found
    as `ab%20cd` or `ab+cd`.
    """
    parts = []
    for char in secret:
        ways = [re.escape(char), "".join(_hex(byte) for byte in char.encode("utf-8"))]
        if char == " ":
            ways.append(r"\+")
        if not char.isascii():
            ways.append(re.escape(json.dumps(char)[1:-1]))
        parts.append(f"(?:{'|'.join(ways)})")
    return "".join(parts)


class Redactor(logging.Filter):
    """A handler filter that replaces every known secret in a record's text and traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)
        # Longest first, so a secret containing another is replaced whole.
        self._pattern = (
            re.compile("|".join(secret_pattern(secret) for secret in self.secrets))
            if self.secrets
            else None
        )

    def redact(self, text: str) -> str:
        """`text` with every secret replaced and every URL's credentials and query values masked."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        # A configured feed URL may carry its credentials (`?apikey=…`, `user:pass@`), and
        # httpx, PTB, slack_sdk and our own lines print request URLs whole: masked in any line.
        return _URL.sub(_masked_url, text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place (message, arguments, traceback, stack); never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it, we still must not leak
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            # The formatted traceback replaces the exception object, whose text and args hold
            # the secret (PTB: "The token `…` was rejected").
            text = "".join(traceback.format_exception(record.exc_info[1])).rstrip("\n")
            record.exc_text = self.redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in fields(record).items():
            if isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The extra fields a log call attached to `record` (delivery_id, chat, ...)."""
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (the Redactor has already rewritten it)."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in fields(record).items():
            line.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


_redactor = Redactor(())


# A URL in free text: scheme, then up to whitespace or a quote/bracket that ends it in prose.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")


def _masked_url(match: re.Match[str]) -> str:
    """A URL found in a log line, credentials and query values masked (see `safe_url`)."""
    url = match.group()
    if "?" not in url and "@" not in url:
        return url  # nothing to hide: keep it exactly as written (the common case)
    try:
        return safe_url(url)
    except ValueError:  # not parseable (a bad IPv6 host): drop all that could hold a secret
        return url.partition("?")[0].rpartition("@")[2]


def safe_url(url: str) -> str:
    """A URL fit for a log line: without its user name, password and query values."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    # A bare query word (`?SECRETONLY`) may be a key by itself: not kept either.
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if "=" in pair else "***"
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def redact(text: str) -> str:
    """`text` without the secrets `setup` was given (for messages printed outside logging)."""
    return _redactor.redact(text)


def json_handler() -> logging.Handler:
    """A stderr handler that writes one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def setup(verbose: int, handler: logging.Handler, env: Mapping[str, str] | None = None) -> None:
    """Root logging at WARNING/INFO/DEBUG (-v count) through `handler`, secrets redacted."""
    global _redactor
    _redactor = Redactor(known_secrets(env))
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    if isinstance(handler.formatter, JsonFormatter):
        # basicConfig gives every handler its format; ours must keep writing JSON.
        handler.setFormatter(JsonFormatter())
    install(_redactor)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose >= 2 else logging.WARNING)
    for name in RAISING_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def install(redactor: Redactor) -> None:
    """Put `redactor` on every handler of the root logger and on uncaught exceptions."""
    for handler in logging.getLogger().handlers:
        if redactor not in handler.filters:
            handler.addFilter(redactor)

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        sys.stderr.write(redactor.redact("".join(traceback.format_exception(kind, value, tb))))

    sys.excepthook = excepthook
