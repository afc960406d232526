import re
from pathlib import Path

import pytest

from bot import config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_file_is_valid_and_matches_defaults() -> None:
    shipped = config.load(ROOT / "config" / "newsbot.toml", env={})
    assert shipped == config.Settings()


def test_defaults_without_file(tmp_path: Path) -> None:
    settings = config.Settings()
    assert settings.storage.url() == "sqlite+aiosqlite:///data/newsbot.sqlite3"
    assert settings.articles.folder == Path("articles")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.load(env={"NEWSBOT_CONFIG": str(tmp_path / "missing.toml")})


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_treshold = 0.9\n")
    with pytest.raises(config.ConfigError, match=r"unknown key classifier\.alert_treshold"):
        config.load(path, env={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_threshold = 1.5\n")
    with pytest.raises(config.ConfigError, match=r"classifier\.alert_threshold"):
        config.load(path, env={})


def test_thresholds_must_be_ordered(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier]\nalert_threshold = 0.3\ndigest_threshold = 0.6\n")
    with pytest.raises(config.ConfigError, match="must not be below"):
        config.load(path, env={})


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[classifier\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(path, env={})


def test_secrets_only_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[secrets]\ntelegram_bot_token = 'x'\n")
    with pytest.raises(config.ConfigError, match="use the environment"):
        config.load(path, env={})
    settings = config.load(ROOT / "config" / "newsbot.toml", env={"TELEGRAM_BOT_TOKEN": "123:ABC"})
    token = settings.secrets.telegram_bot_token
    assert token is not None and token.get_secret_value() == "123:ABC"
    assert "123:ABC" not in repr(settings) and "123:ABC" not in str(settings)


def test_environment_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\ndatabase_url = "sqlite:///file.db"\n')
    env = {
        "NEWSBOT_DATABASE_URL": "postgresql://u@h/db",
        "NEWSBOT_TELEGRAM_API_URL": "http://127.0.0.1:9/bot",
    }
    settings = config.load(path, env=env)
    assert settings.storage.database_url == "postgresql://u@h/db"
    assert settings.telegram.api_url == "http://127.0.0.1:9/bot"
    flagged = config.load(path, env=env, overrides={"storage": {"database_url": "sqlite:///x.db"}})
    assert flagged.storage.database_url == "sqlite:///x.db"


@pytest.mark.reliability
def test_values_are_strictly_typed_but_paths_and_arrays_come_from_toml(tmp_path: Path) -> None:
    """Issue 11 #23: `max_items = "20"` was silently accepted; TOML types are meant."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[classifier]\nalert_threshold = 1\nfeedback_model = "data/m.json"\n'
        '[articles]\nlanguages = ["en"]\nfolder = "in"\n'
        '[sources]\nfeeds = [{ url = "https://x.example/feed", interval_seconds = 60 }]\n'
    )
    settings = config.load(path, env={"NEWSBOT_DATA_DIR": "/srv/newsbot"})
    assert settings.classifier.alert_threshold == 1.0  # an integer is a fine float
    assert settings.classifier.feedback_model == Path("data/m.json")
    assert settings.articles.languages == ("en",) and settings.articles.folder == Path("in")
    assert settings.sources.feeds[0].interval_seconds == 60
    assert settings.storage.data_dir == Path("/srv/newsbot")
    for body, key in (
        ('[digest]\nmax_items = "20"\n', "digest.max_items"),
        ("[articles]\nwatch = 1\n", "articles.watch"),
        ("[delivery]\nmax_attempts = 2.0\n", "delivery.max_attempts"),
        ('[sources]\nfeeds = [{ url = "u", interval_seconds = "60" }]\n', "sources.feeds.0"),
        ("[articles]\nlanguages = []\n", "articles.languages"),
        ('[sources]\nfeeds = [{ url = "file:///etc/passwd" }]\n', "sources.feeds.0.url"),
        ('[telegram]\napi_url = "not a url"\n', "telegram.api_url"),
        ('[storage]\ndatabase_url = "postgresql://u@h:99999/db"\n', "storage.database_url"),
        ('[redis]\nurl = "http://h:6379"\n', "redis.url"),
        ('[redis]\nurl = "redis://:6379"\n', "redis.url"),
        ('[delivery]\nsenders = "some"\n', "delivery.senders"),
        ('[log]\nformat = "xml"\n', "log.format"),
    ):
        path.write_text(body)
        with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
            config.load(path, env={})


def test_a_database_password_is_never_echoed() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load(env={}, overrides={"storage": {"database_url": "mysql://u:hunter2@h/db"}})
    assert "hunter2" not in str(caught.value) and "mysql://u:***@h/db" in str(caught.value)
    assert str(caught.value).startswith("command line: storage.database_url: unsupported")


def test_a_feed_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    """A `user:password@` feed was accepted, then failed every poll with the password logged."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[sources]\nfeeds = [{ url = "http://user:hunter2@news.example/rss?apikey=TOPSECRET" }]\n'
    )
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env={})
    message = str(caught.value)
    assert "sources.feeds.0.url" in message and "user name or password" in message
    assert "hunter2" not in message and "TOPSECRET" not in message
    assert "\n" not in message


@pytest.mark.parametrize("variable", ["SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"])
def test_half_a_slack_set_up_is_a_configuration_error(variable: str) -> None:
    """SLACK_APP_TOKEN or SLACK_SIGNING_SECRET without SLACK_BOT_TOKEN ran the console, exit 0."""
    with pytest.raises(config.ConfigError) as caught:
        config.load(ROOT / "config" / "newsbot.toml", env={variable: "xapp-1-secret-value"})
    message = str(caught.value)
    assert variable in message and "SLACK_BOT_TOKEN is missing" in message
    assert "secret-value" not in message
    both = config.load(
        ROOT / "config" / "newsbot.toml",
        env={variable: "xapp-1-secret-value", "SLACK_BOT_TOKEN": "xoxb-1"},
    )
    assert both.secrets.slack_bot_token is not None


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinite_or_nan_numbers_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[sources]\ntotal_timeout = {value}\n")
    with pytest.raises(config.ConfigError, match=r"sources\.total_timeout"):
        config.load(path, env={})


def test_a_redis_password_is_never_echoed_and_the_url_comes_from_the_environment() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load(env={"NEWSBOT_REDIS_URL": "redis://:hunter2@h:notaport/0"})
    assert "hunter2" not in str(caught.value) and "redis://:***@h:notaport/0" in str(caught.value)
    assert str(caught.value).startswith("environment variable NEWSBOT_REDIS_URL: redis.url:")
    loaded = config.load(env={"NEWSBOT_REDIS_URL": "redis://:pw@127.0.0.1:6379/2"})
    assert loaded.redis.url == "redis://:pw@127.0.0.1:6379/2"
    assert config.load(env={"NEWSBOT_SENDERS": "all"}).delivery.senders == "all"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[digest]\ncatch_up_hours = 1e300\n", "digest.catch_up_hours"),
        ("[articles]\nsettle_seconds = 1e300\n", "articles.settle_seconds"),
        ("[delivery]\nretention_days = 100000000\n", "delivery.retention_days"),
        ("[sources]\nconnect_timeout = 1e300\n", "sources.connect_timeout"),
        ("[sources]\nread_timeout = 1e300\n", "sources.read_timeout"),
        (
            "[sources]\nfeeds = [{ url = 'https://x.example/', interval_seconds = 10000000 }]\n",
            "sources.feeds.0.interval_seconds",
        ),
        ("[delivery]\nmax_attempts = 100000000\n", "delivery.max_attempts"),
        ("[chat]\nmax_question_chars = 100000000\n", "chat.max_question_chars"),
    ],
)
def test_durations_and_counts_have_upper_bounds(tmp_path: Path, body: str, key: str) -> None:
    """`catch_up_hours = 1e300` was accepted, then overflowed in the digest job (exit 1)."""
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(config.ConfigError, match=key.replace(".", r"\.") + ": .*less than"):
        config.load(path, env={})


def test_the_documented_maxima_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[digest]\ncatch_up_hours = 168\n[articles]\nsettle_seconds = 3600\n"
        "[delivery]\nretention_days = 36500\nmax_attempts = 1000\n"
    )
    loaded = config.load(path, env={})
    assert loaded.digest.catch_up_hours == 168 and loaded.delivery.retention_days == 36500


def test_several_bad_keys_are_one_line_naming_the_first_and_the_others(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[digest]\nat = "25:99"\ntimezone = "Mars/Olympus"\nmax_itemz = 3\n')
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env={})
    [line] = str(caught.value).splitlines()
    assert line.startswith(f"{path}: digest.at: ")
    assert line.endswith("(also bad: digest.timezone, digest.max_itemz)")


def test_a_data_dir_that_is_a_file_names_the_key_and_where_it_came_from(tmp_path: Path) -> None:
    occupied = tmp_path / "file"
    occupied.write_text("x")
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndata_dir = "{occupied}"\n')
    where = re.escape(f"{path}: storage.data_dir: ")
    with pytest.raises(config.ConfigError, match=rf"^{where}.* is a file"):
        config.load(path, env={})
    with pytest.raises(config.ConfigError, match=r"^environment variable NEWSBOT_DATA_DIR: "):
        config.load(env={"NEWSBOT_DATA_DIR": str(occupied / "below")})
    # A missing folder that can be made is fine, and is not left behind by the check.
    fresh = tmp_path / "new" / "data"
    assert config.load(env={"NEWSBOT_DATA_DIR": str(fresh)}).storage.data_dir == fresh
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("variable", config.SECRET_VARIABLES)
def test_every_secret_loses_the_line_break_an_env_file_leaves(variable: str) -> None:
    """Review defect 3: `TOKEN\\n` from an env or secret file went into the request URL."""
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2", variable: " xoxb-1-AAsecret\r\n"}
    loaded = config.load(ROOT / "config" / "newsbot.toml", env=env)
    secret = getattr(loaded.secrets, variable.lower())
    assert secret is not None and secret.get_secret_value() == "xoxb-1-AAsecret"


def test_a_database_url_loses_an_env_files_line_break_and_refuses_one_inside(
    tmp_path: Path,
) -> None:
    """Second review, defect 2: `NEWSBOT_DATABASE_URL` ending in `\\r\\n` made SQLite create a
    file named `x.db\\r\\n`, and PostgreSQL exit 1 with a library message over two lines."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    loaded = config.load(
        ROOT / "config" / "newsbot.toml", env={"NEWSBOT_DATABASE_URL": url + "\r\n"}
    )
    assert loaded.storage.database_url == url
    broken = "postgresql://user:pw123@127.0.0.1:5432/news\nbot"
    with pytest.raises(config.ConfigError) as caught:
        config.load(ROOT / "config" / "newsbot.toml", env={"NEWSBOT_DATABASE_URL": broken})
    message = str(caught.value)
    assert "NEWSBOT_DATABASE_URL" in message and "control character" in message
    assert "pw123" not in message and "\n" not in message


@pytest.mark.parametrize("folder", ["/", "//", "/tmp/.."])
def test_the_filesystem_root_is_no_article_folder(folder: str) -> None:
    """Third review: `NEWSBOT_ARTICLES=/` made `newsbot ask` walk the whole filesystem."""
    with pytest.raises(config.ConfigError) as caught:
        config.load(ROOT / "config" / "newsbot.toml", env={"NEWSBOT_ARTICLES": folder})
    assert "articles.folder" in str(caught.value) and "root" in str(caught.value)
