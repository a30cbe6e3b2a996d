"""Settings and load_settings: flag > MAILSPOOL_ environment > mailspool.toml > default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailspool.config import Settings, load_settings, parse_duration
from mailspool.errors import ConfigError


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MAILSPOOL_ variables from the outside, and a working directory of our own."""
    for name in list(os.environ):
        if name.startswith("MAILSPOOL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("5d", 432000.0),
        ("90", 90.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (" 30 s ", 30.0),
        ("10M", 600.0),
        ("1h30m", 5400.0),
        ("1d 12h", 129600.0),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "s", "abc", "10x", "10 minutes", "-5", "-5s", "1e3", "5d3", "m10", "1.5.3s", "٣s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.5, float("inf"), float("nan"), True])
def test_parse_duration_rejects_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# -- defaults ------------------------------------------------------------------------------------


def test_defaults_match_the_design() -> None:
    s = load_settings()
    assert s.queue == "sqlite:///mailspool.db"
    assert s.smtp == [] and s.relays == []  # no relay: write to the outbox
    assert s.outbox == Path("outbox")
    assert s.concurrency == 8
    assert s.rate is None
    assert s.rate_per_second is None
    assert s.retry_first == 300.0
    assert s.retry_factor == 2.0
    assert s.retry_max_delay == 3600.0
    assert s.max_age == 5 * 86400.0
    assert s.max_attempts == 0
    assert (s.connect_timeout, s.command_timeout, s.data_timeout) == (30.0, 300.0, 600.0)
    assert s.from_addr is None
    assert (s.log_level, s.log_format) == ("info", "auto")


# -- precedence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "flag", "env", "toml", "default", "expected"),
    [
        # field, flag value, env value, toml line, default, (flag, env, file, default) results
        ("concurrency", "32", "16", "concurrency = 4", 8, (32, 16, 4, 8)),
        ("rate", "20/s", "500/m", 'rate = "10000/h"', None, ("20/s", "500/m", "10000/h", None)),
        ("queue", "memory://", "redis://r:6379/0", 'queue = "sqlite:///x.db"',
         "sqlite:///mailspool.db", ("memory://", "redis://r:6379/0", "sqlite:///x.db",
                                    "sqlite:///mailspool.db")),
        ("lease", "2m", "90", 'lease = "30s"', 60.0, (120.0, 90.0, 30.0, 60.0)),
        ("max_age", "1d", "12h", "max_age = 3600", 432000.0, (86400.0, 43200.0, 3600.0, 432000.0)),
        ("retry_first", "1m", "2m", 'retry-first = "3m"', 300.0, (60.0, 120.0, 180.0, 300.0)),
        ("max_attempts", "3", "5", "max-attempts = 7", 0, (3, 5, 7, 0)),
        ("from", "a@x.example", "b@x.example", 'from = "c@x.example"', None,
         ("a@x.example", "b@x.example", "c@x.example", None)),
        ("key_column", "id", "email", 'key-column = "row"', None, ("id", "email", "row", None)),
        # webhooks: a list; blanks separate endpoints in the environment (a filter has commas)
        ("webhook", ["http://f.example/h"], "sent,dead=http://e.example/h http://e.example/2",
         'webhook = ["dead=https://t.example/h"]', [],
         (["http://f.example/h"], ["sent,dead=http://e.example/h", "http://e.example/2"],
          ["dead=https://t.example/h"], [])),
        ("webhook_retry_period", "1d", "12h", 'webhook-retry-period = "2h"', 259200.0,
         (86400.0, 43200.0, 7200.0, 259200.0)),
    ],
)  # fmt: skip
def test_precedence_flag_env_file_default(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    field: str,
    flag: str,
    env: str,
    toml: str,
    default: object,
    expected: tuple[object, object, object, object],
) -> None:
    attr = "from_addr" if field == "from" else field
    env_name = "MAILSPOOL_" + field.upper()
    monkeypatch.setenv("MAILSPOOL_CONFIG", str(write_config(tmp_path / "conf.toml", toml)))
    monkeypatch.setenv(env_name, env)
    assert getattr(load_settings(**{field: flag}), attr) == expected[0]
    assert getattr(load_settings(**{field: None}), attr) == expected[1]  # None: flag not given
    monkeypatch.delenv(env_name)
    assert getattr(load_settings(), attr) == expected[2]
    monkeypatch.delenv("MAILSPOOL_CONFIG")
    assert getattr(load_settings(), attr) == expected[3] == default


def test_mailspool_toml_in_the_working_directory(clean: Path) -> None:
    write_config(clean / "mailspool.toml", 'smtp = "smtp://localhost:2525"\nconcurrency = 3\n')
    s = load_settings()
    assert (s.smtp, s.concurrency) == (["smtp://localhost:2525"], 3)


def test_mailspool_config_replaces_the_working_directory_file(
    monkeypatch: pytest.MonkeyPatch, clean: Path
) -> None:
    write_config(clean / "mailspool.toml", "concurrency = 3\n")
    other = write_config(clean / "elsewhere.toml", "concurrency = 5\n")
    monkeypatch.setenv("MAILSPOOL_CONFIG", str(other))
    assert load_settings().concurrency == 5


def test_layers_combine_per_setting(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    write_config(clean / "mailspool.toml", 'concurrency = 3\nrate = "5/s"\nlease = "2m"\n')
    monkeypatch.setenv("MAILSPOOL_RATE", "7/s")
    s = load_settings(lease="10s")
    assert (s.concurrency, s.rate, s.lease) == (3, "7/s", 10.0)
    assert s.rate_per_second == 7.0


def test_env_names_use_the_option_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """--from is MAILSPOOL_FROM; an unprefixed FROM in the environment means nothing."""
    monkeypatch.setenv("FROM", "stray@example.com")
    monkeypatch.setenv("SUBJECT", "stray")
    monkeypatch.setenv("RATE", "bogus")
    s = load_settings()
    assert (s.from_addr, s.subject, s.rate) == (None, None, None)
    monkeypatch.setenv("MAILSPOOL_FROM", "news@example.com")
    assert load_settings().from_addr == "news@example.com"


def test_empty_environment_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, clean: Path
) -> None:
    write_config(clean / "mailspool.toml", 'rate = "5/s"\n')
    monkeypatch.setenv("MAILSPOOL_RATE", "")
    monkeypatch.setenv("MAILSPOOL_SMTP", "")
    s = load_settings()
    assert (s.rate, s.smtp) == ("5/s", [])


def test_paths_and_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSPOOL_TEMPLATE", "mail.j2")
    s = load_settings(outbox="out", attachment_dir="files", subject="Hi {{ Name }}")
    assert s.template == Path("mail.j2")
    assert s.outbox == Path("out")
    assert s.attachment_dir == Path("files")
    assert s.subject == "Hi {{ Name }}"


def test_settings_accept_option_spellings_directly() -> None:
    assert Settings(**{"from": "a@example.com"}).from_addr == "a@example.com"  # type: ignore[arg-type]
    assert Settings(from_addr="b@example.com").from_addr == "b@example.com"


# -- invalid values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"concurrency": "0"}, "concurrency"),
        ({"concurrency": "many"}, "concurrency"),
        ({"concurrency": 5000}, "concurrency"),
        ({"rate": "fast"}, "rate"),
        ({"rate": "0/s"}, "rate"),
        ({"lease": "0"}, "lease"),
        ({"lease": "soon"}, "lease"),
        ({"max_wait": "-1"}, "max_wait"),
        ({"retry_first": "0s"}, "retry_first"),
        ({"retry_max_delay": "forever"}, "retry_max_delay"),
        ({"max_age": "5 days"}, "max_age"),
        ({"max_attempts": "-1"}, "max_attempts"),
        ({"connect_timeout": "0"}, "connect_timeout"),
        ({"command_timeout": "x"}, "command_timeout"),
        ({"data_timeout": "-600"}, "data_timeout"),
        ({"log_level": "chatty"}, "log_level"),
        ({"log_format": "xml"}, "log_format"),
        ({"limits_redis": "amqp://127.0.0.1/"}, "limits_redis"),
    ],
)
def test_invalid_flags_name_the_field(flags: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as exc:
        load_settings(**flags)
    assert str(exc.value).startswith("invalid settings: " + field)


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("MAILSPOOL_CONCURRENCY", "lots", "concurrency"),
        ("MAILSPOOL_RATE", "20/d", "rate"),
        ("MAILSPOOL_MAX_WAIT", "10 minutes", "max_wait"),
        ("MAILSPOOL_MAX_ATTEMPTS", "3.5", "max_attempts"),
    ],
)
def test_invalid_environment_names_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=field):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("concurrency = 0", "concurrency"),
        ('concurrency = "x"', "concurrency"),
        ('lease = "1 week"', "lease"),
        ("lease = -5", "lease"),
        ("lease = true", "lease"),
        ("lease = [1, 2]", "lease"),
        ('rate = "lots"', "rate"),
        ('from = ["a@example.com"]', "from"),
    ],
)
def test_invalid_file_values_name_the_field(clean: Path, toml: str, field: str) -> None:
    write_config(clean / "mailspool.toml", toml + "\n")
    with pytest.raises(ConfigError, match=field):
        load_settings()


def test_unknown_key_in_the_file(clean: Path) -> None:
    write_config(clean / "mailspool.toml", 'concurency = 4\nrate = "5/s"\n')
    with pytest.raises(ConfigError, match="concurency"):
        load_settings()


def test_file_that_is_not_toml(clean: Path) -> None:
    path = write_config(clean / "mailspool.toml", "concurrency: 4\n")
    with pytest.raises(ConfigError, match="TOML") as exc:
        load_settings()
    assert str(path.name) in str(exc.value)


def test_config_named_by_env_must_exist(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    monkeypatch.setenv("MAILSPOOL_CONFIG", str(clean / "missing.toml"))
    with pytest.raises(ConfigError, match="MAILSPOOL_CONFIG"):
        load_settings()


def test_missing_default_file_is_fine() -> None:
    assert load_settings().concurrency == 8


def test_unknown_flag() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(bogus="1")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('webhook = ["opened=https://t.example/h"]', "unknown event type opened"),
        ('webhook = ["ftp://t.example/h"]', "http:// or https://"),
        ('webhook-timeout = "soon"', "bad duration"),
    ],
)
def test_a_bad_webhook_setting_names_what_is_wrong(clean: Path, value: str, error: str) -> None:
    write_config(clean / "mailspool.toml", value + "\n")
    with pytest.raises(ConfigError, match=error):
        load_settings()
