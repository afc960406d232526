"""Typed settings: config/newsbot.toml plus environment, validated once at start."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.models import Preferences, Thresholds

DEFAULT_CONFIG_PATH = Path("config/newsbot.toml")


class ConfigError(Exception):
    """A config file, key or value is wrong; the message names the file and the key."""


class _Section(BaseModel):
    # extra="forbid" turns a misspelt key into an error that names it instead of a silent default;
    # strict: TOML values are typed, so `max_items = "20"` is a mistake to report, not to coerce.
    # No inf or nan: `total_timeout = inf` would wait forever, `nan` compares false everywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# TOML and the environment have no path or tuple types: these accept strings and arrays.
PathValue = Annotated[Path, Field(strict=False)]
Language = Literal["de", "en"]
# The databases the store supports, with or without naming the async driver.
_DATABASE_URL = re.compile(r"^(sqlite(\+aiosqlite)?|postgres(ql)?(\+asyncpg)?)://")


def _http_url(value: str) -> str:
    """An http(s) URL with a host, else a ValueError saying so."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("needs an http:// or https:// URL with a host name")
    if "@" in parts.netloc:
        # Refused at every fetch anyway (credentials in URLs end up in logs and replies).
        raise ValueError("a user name or password in the URL is not allowed")
    return value.strip()


class StorageSettings(_Section):
    """Where newsbot keeps its database."""

    database_url: str = ""
    data_dir: PathValue = Path("data")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        # An env file's line break is dropped; one inside would name another database (or a
        # SQLite file called "x.db\r\n"). The message shows the URL only without its password.
        value = value.strip()
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("contains a space or a control character (such as a line break)")
        if value and not _DATABASE_URL.match(value):
            raise ValueError(
                "unsupported database URL; use sqlite:///path/to/file.sqlite3 or "
                "postgresql://user@host:5432/db"
            )
        if value:
            import sqlalchemy as sa  # only when a URL is configured: the CLI starts faster

            try:
                port = sa.make_url(value).port
            except ValueError:  # a port that is not a number
                raise ValueError("the port in the database URL is not a number") from None
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"port {port} in the database URL is out of range")
            if value.startswith("sqlite") and sa.make_url(value).host:
                # sqlite://relative.db parses "relative.db" as a host, which SQLAlchemy then
                # refuses at connect with a message naming neither key nor fix.
                raise ValueError(
                    "a SQLite URL has three slashes before a relative path "
                    "(sqlite:///data/x.sqlite3) and four before an absolute one "
                    "(sqlite:////srv/x.sqlite3)"
                )
        return value

    def url(self) -> str:
        """The SQLAlchemy async URL: the configured one, else a SQLite file in `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'newsbot.sqlite3'}"


class ArticlesSettings(_Section):
    """The local article folder and how files are read."""

    folder: PathValue = Path("articles")
    max_file_bytes: int = Field(default=5_000_000, gt=0, le=1_000_000_000)
    # newsbot's classifier, extractor and answers know German and English.
    languages: Annotated[tuple[Language, ...], Field(strict=False)] = ("de", "en")
    watch: bool = True
    # A file is read once unchanged this long, so a half-written file is never alerted on.
    settle_seconds: float = Field(default=2.0, ge=0, le=3600)

    @field_validator("folder", mode="before")
    @classmethod
    def _some_folder(cls, value: object) -> object:
        # Path("") is Path("."): an empty value would read the whole working directory.
        if isinstance(value, str) and not value.strip():
            raise ValueError('is empty; name a folder (default "articles")')
        if isinstance(value, str | Path) and not os.path.abspath(value).strip("/"):
            # Every file of the machine, recursively: never what an article folder means.
            raise ValueError('is the filesystem root; name a folder (default "articles")')
        return value

    @field_validator("languages")
    @classmethod
    def _some_language(cls, value: tuple[Language, ...]) -> tuple[Language, ...]:
        if not value:
            raise ValueError('needs at least one of "de", "en"')
        return value


class ClassifierSettings(_Section):
    """Score cut-offs for alerts and digests, and the optional feedback model."""

    alert_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    digest_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    feedback_model: Annotated[Path | None, Field(strict=False)] = None
    # The nightly job re-trains `feedback_model` once this many new 👍/👎 arrived (0: never).
    retrain_min_judgements: int = Field(default=20, ge=0, le=1_000_000)

    def thresholds(self) -> Thresholds:
        """The cut-offs as the classifier takes them."""
        return Thresholds(self.alert_threshold, self.digest_threshold)


class DigestSettings(_Section):
    """What a digest contains, and the schedule new subscriptions start with."""

    max_items: int = Field(default=20, gt=0, le=200)
    empty_message: bool = False
    at: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"
    # After downtime, a missed digest is sent once if its slot is at most this old.
    catch_up_hours: float = Field(default=6.0, ge=0, le=168)

    def preferences(self) -> Preferences:
        """What a new subscription starts with."""
        return Preferences(digest_at=self.at, timezone=self.timezone)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value


class FeedSettings(_Section):
    """One feed to poll."""

    url: str
    name: str = ""
    interval_seconds: int = Field(default=600, ge=30, le=604_800)

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        return _http_url(value)


class SourcesSettings(_Section):
    """Feeds to poll and how feeds are fetched."""

    feeds: Annotated[tuple[FeedSettings, ...], Field(strict=False)] = ()
    # Allow feeds on loopback/private/link-local addresses (only for feeds inside your network).
    allow_private: bool = False
    # Feeds one chat may add with /sources add.
    max_per_chat: int = Field(default=20, ge=0, le=10_000)
    connect_timeout: float = Field(default=5.0, gt=0, le=600)
    read_timeout: float = Field(default=10.0, gt=0, le=600)
    total_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_bytes: int = Field(default=5_000_000, gt=0, le=1_000_000_000)
    max_decompressed_bytes: int = Field(default=20_000_000, gt=0, le=1_000_000_000)
    max_redirects: int = Field(default=5, ge=0, le=50)
    # Fetch the linked page's main text when a feed item carries only a teaser.
    full_text: bool = False
    # Requests at once to one host (feeds and linked pages), however many feeds it serves.
    per_host: int = Field(default=4, ge=1, le=100)


class DeliverySettings(_Section):
    """Retries and retention of the delivery ledger."""

    max_attempts: int = Field(default=8, gt=0, le=1000)
    retention_days: int = Field(default=30, gt=0, le=36_500)
    # Shared database: "leader" (only the elected instance sends) or "all" (every instance
    # sends, booking slots in the shared rate limit). Env: NEWSBOT_SENDERS.
    senders: Literal["leader", "all"] = "leader"


class RedisSettings(_Section):
    """Redis for the platform rate limit shared by instances (else the PostgreSQL database)."""

    # redis://[:password@]host:port/db, rediss:// (TLS) or unix:///path; "" for none.
    # Env: NEWSBOT_REDIS_URL.
    url: str = ""
    # Prefix of our keys, so deployments can share one Redis server.
    key_prefix: str = Field(default="newsbot", min_length=1, max_length=100)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("needs a host, e.g. redis://127.0.0.1:6379/0")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("needs a socket path, e.g. unix:///run/redis.sock")
        try:
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError as exc:
            raise ValueError("has an invalid port") from exc
        return value


class LogSettings(_Section):
    """How log lines look."""

    # "text" for people, "json" for log collectors: one object per line. Env: NEWSBOT_LOG_FORMAT;
    # the --log-format option overrides both.
    format: Literal["text", "json"] = "text"


class ChatSettings(_Section):
    """Behaviour shared by every chat platform."""

    default_language: Language = "en"
    questions_per_minute: int = Field(default=10, gt=0, le=10_000)
    # Commands and button presses one user may send per minute in one chat, and one chat in all.
    commands_per_minute: int = Field(default=20, gt=0, le=10_000)
    chat_commands_per_minute: int = Field(default=60, gt=0, le=10_000)
    # Longer questions get a polite refusal (answering cost grows with the question).
    max_question_chars: int = Field(default=500, gt=0, le=100_000)


class TelegramSettings(_Section):
    """Telegram Bot API connection; the token comes only from TELEGRAM_BOT_TOKEN."""

    api_url: str = "https://api.telegram.org/bot"
    mode: Literal["polling", "webhook"] = "polling"

    @field_validator("api_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        return _http_url(value)

    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, gt=0, lt=65536)


class SlackSettings(_Section):
    """Slack connection; tokens come only from the SLACK_* environment variables."""

    # "auto": Socket Mode when SLACK_APP_TOKEN is set, else HTTP (Events API) when
    # SLACK_SIGNING_SECRET is set.
    mode: Literal["auto", "socket", "http"] = "auto"
    # Web API base URL (a test server or a proxy). Env: NEWSBOT_SLACK_API_URL.
    api_url: str = "https://slack.com/api/"
    # HTTP mode: where the /slack/events endpoint listens. Env: NEWSBOT_SLACK_PORT (the port).
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=3000, gt=0, lt=65536)
    # User ids (U…) who may change subscriptions, settings and feeds besides workspace admins.
    admins: Annotated[tuple[str, ...], Field(strict=False)] = ()


class OpsSettings(_Section):
    """The operator's endpoint: /healthz and /metrics (Prometheus) on a local port."""

    http_host: str = "127.0.0.1"
    # 0: no endpoint. Env: NEWSBOT_OPS_PORT.
    http_port: int = Field(default=0, ge=0, lt=65536)


class Secrets(BaseModel):
    """Credentials, read only from the environment and never printed."""

    model_config = ConfigDict(frozen=True)

    telegram_bot_token: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _one_word(cls, value: object) -> object:
        # An env file or a secret file usually ends the value with a newline: dropped. Inside
        # a credential, whitespace or a control character cannot be meant, and in a URL it
        # fails as "cannot reach" for ever; the message never quotes the value.
        if isinstance(value, str):
            value = value.strip()
            if any(char.isspace() or not char.isprintable() for char in value):
                raise ValueError(
                    "contains a space or a control character (such as a line break) inside it; "
                    "set the credential exactly as issued"
                )
        return value


class Settings(_Section):
    """Everything newsbot is configured with."""

    storage: StorageSettings = StorageSettings()
    articles: ArticlesSettings = ArticlesSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    digest: DigestSettings = DigestSettings()
    sources: SourcesSettings = SourcesSettings()
    delivery: DeliverySettings = DeliverySettings()
    chat: ChatSettings = ChatSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()
    ops: OpsSettings = OpsSettings()
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    secrets: Secrets = Secrets()


# Environment variables that override single keys, so a deployment needs no file edits.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "NEWSBOT_DATABASE_URL": ("storage", "database_url"),
    "NEWSBOT_DATA_DIR": ("storage", "data_dir"),
    "NEWSBOT_ARTICLES": ("articles", "folder"),
    "NEWSBOT_TELEGRAM_API_URL": ("telegram", "api_url"),
    "NEWSBOT_SLACK_API_URL": ("slack", "api_url"),
    "NEWSBOT_SLACK_PORT": ("slack", "http_port"),
    "NEWSBOT_OPS_HOST": ("ops", "http_host"),
    "NEWSBOT_OPS_PORT": ("ops", "http_port"),
    "NEWSBOT_SENDERS": ("delivery", "senders"),
    "NEWSBOT_REDIS_URL": ("redis", "url"),
    "NEWSBOT_LOG_FORMAT": ("log", "format"),
}
SECRET_VARIABLES = (
    "TELEGRAM_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read, merge and validate settings: file < environment < explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    explicit = path is not None or "NEWSBOT_CONFIG" in env
    path = path or Path(env.get("NEWSBOT_CONFIG", DEFAULT_CONFIG_PATH))
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    elif explicit:
        raise ConfigError(f"{path}: config file not found")
    if "secrets" in data:
        raise ConfigError(f"{path}: [secrets] may not be set in a file; use the environment")
    # Where each value came from, so an error names what the user has to change.
    origins: dict[str, str] = {}
    for variable, (section, key) in ENV_OVERRIDES.items():
        if env.get(variable):
            data.setdefault(section, {})[key] = _env_value(section, key, env[variable])
            origins[f"{section}.{key}"] = f"environment variable {variable}"
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
        origins.update({f"{section}.{key}": "command line" for key in values})
    data["secrets"] = {
        name.lower(): env[name] for name in SECRET_VARIABLES if env.get(name, "").strip()
    }
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, origins)) from None
    secrets = settings.secrets
    if secrets.slack_bot_token is None and (
        secrets.slack_app_token is not None or secrets.slack_signing_secret is not None
    ):
        # Half a Slack set-up would otherwise run the console chat and exit 0, doing nothing.
        given = "SLACK_APP_TOKEN" if secrets.slack_app_token is not None else "SLACK_SIGNING_SECRET"
        raise ConfigError(
            f"{given} is set but SLACK_BOT_TOKEN is missing: Slack needs the app's Bot User "
            "OAuth Token (xoxb-…) too"
        )
    if settings.telegram.mode == "webhook" and not settings.telegram.webhook_url:
        raise ConfigError(
            f'{path}: telegram.webhook_url: required with telegram.mode = "webhook" '
            "(the public HTTPS URL Telegram posts updates to)"
        )
    _check_data_dir(settings.storage, origins.get("storage.data_dir", str(path)))
    if settings.classifier.alert_threshold < settings.classifier.digest_threshold:
        raise ConfigError(
            f"{path}: classifier.alert_threshold ({settings.classifier.alert_threshold}) must "
            f"not be below classifier.digest_threshold ({settings.classifier.digest_threshold})"
        )
    return settings


def _check_data_dir(storage: StorageSettings, where: str) -> None:
    """A data_dir that is a file, or (holding the SQLite file) cannot be created, is an error."""
    folder = storage.data_dir
    prefix = f"{where}: storage.data_dir: {folder}"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{prefix} is a file, not a folder")
    if storage.database_url or folder.is_dir():
        return
    # The SQLite file goes there: try to create the folder now (and take away what we made)
    # rather than fail later with an OSError that names neither key nor variable.
    made: list[Path] = []
    try:
        for part in reversed((folder, *folder.parents)):
            if not part.exists():
                part.mkdir()
                made.append(part)
            elif not part.is_dir():
                raise ConfigError(f"{prefix} cannot be created: {part} is a file")
    except OSError as exc:
        raise ConfigError(f"{prefix} cannot be created: {exc.strerror or exc}") from None
    finally:
        for part in reversed(made):
            with contextlib.suppress(OSError):  # another process started using it meanwhile
                part.rmdir()


def _env_value(section: str, key: str, raw: str) -> Any:
    """An environment variable's text as the key's type (the environment has only strings)."""
    section_type = Settings.model_fields[section].annotation
    field = (
        section_type.model_fields[key]
        if isinstance(section_type, type) and issubclass(section_type, BaseModel)
        else None
    )
    if field is not None and field.annotation is int:
        try:
            return int(raw.strip())
        except ValueError:
            return raw  # validation then names the variable and the bad value
    return raw


def _describe(path: Path, exc: ValidationError, origins: Mapping[str, str]) -> str:
    """One line naming the first problem's key (and the other bad keys), no secret values."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        where = origins.get(key, str(path))
        if key.startswith("secrets"):
            key = key.removeprefix("secrets.").upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append((key, f"environment variable {key}: {message}"))
        elif error["type"] == "extra_forbidden":
            problems.append((key, f"{where}: unknown key {key}"))
        else:
            got = error.get("input")
            if isinstance(got, str) and "://" in got:
                got = _without_password(got)
            message = error["msg"].removeprefix("Value error, ")
            problems.append((key, f"{where}: {key}: {message} (got {got!r})"))
    # One line however many problems: the first in full, then the other keys by name.
    first, *others = problems
    if not others:
        return first[1]
    more = ", ".join(dict.fromkeys(key for key, _ in others))
    return f"{first[1]} (also bad: {more})"


def _without_password(url: str) -> str:
    """A URL fit for an error message: no password (`user:***@host`) and no query values."""
    # Query values too: feed URLs carry API keys there (`?apikey=…`).
    url = re.sub(r"([?&][^=&#]*=)[^&#]*", r"\1***", url)
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
