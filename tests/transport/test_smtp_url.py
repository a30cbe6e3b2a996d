"""parse_smtp_url, SMTPSettings and redact_url (docs/smtp.md).

Secrets never appear in logs, summaries or error messages: every string this module
produces for display is checked for the password, raw and percent-encoded.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import pytest

from mailspool.errors import ConfigError
from mailspool.transport.url import SMTPSettings, parse_smtp_url
from mailspool.urls import is_loopback, redact_url

SECRET = "S3cr3t:p@ss/w?rd#1"
SECRET_Q = quote(SECRET, safe="")


@pytest.fixture(autouse=True)
def no_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSPOOL_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("MAILSPOOL_SMTP_PASSWORD_FILE", raising=False)


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    for form in (secret, quote(secret, safe=""), quote(secret)):
        assert form not in text, f"secret leaked into {text!r}"


# -- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit", "starttls"),
    [
        ("smtp://relay.example.com", "relay.example.com", 587, False, "required"),
        ("smtp://relay.example.com:25", "relay.example.com", 25, False, "required"),
        ("smtps://relay.example.com", "relay.example.com", 465, True, "off"),
        ("smtps://relay.example.com:2465", "relay.example.com", 2465, True, "off"),
        ("SMTP://Relay.Example.COM", "relay.example.com", 587, False, "required"),
        ("smtp://192.0.2.10", "192.0.2.10", 587, False, "required"),
        ("smtp://[2001:db8::1]:2525", "2001:db8::1", 2525, False, "required"),
        # loopback: STARTTLS is opportunistic (a local sink rarely has a certificate)
        ("smtp://localhost", "localhost", 587, False, "opportunistic"),
        ("smtp://LOCALHOST:1025", "localhost", 1025, False, "opportunistic"),
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, False, "opportunistic"),
        ("smtp://127.8.9.10", "127.8.9.10", 587, False, "opportunistic"),
        ("smtp://[::1]:2525", "::1", 2525, False, "opportunistic"),
        # an explicit choice wins
        (
            "smtp://relay.example.com?starttls=opportunistic",
            "relay.example.com",
            587,
            False,
            "opportunistic",
        ),
        ("smtp://relay.example.com?starttls=off", "relay.example.com", 587, False, "off"),
        ("smtp://localhost?starttls=required", "localhost", 587, False, "required"),
        ("smtp://localhost?starttls=REQUIRED", "localhost", 587, False, "required"),
        ("smtps://relay.example.com?starttls=required", "relay.example.com", 465, True, "off"),
    ],
)
def test_host_port_and_tls_defaults(
    url: str, host: str, port: int, implicit: bool, starttls: str
) -> None:
    s = parse_smtp_url(url)
    assert (s.host, s.port, s.implicit_tls, s.starttls) == (host, port, implicit, starttls)
    assert s.verify is True
    assert s.cafile is None
    assert s.username is None
    assert s.password is None


def test_timeouts_default_to_the_design_and_can_be_overridden() -> None:
    s = parse_smtp_url("smtp://relay.example.com")
    assert (s.connect_timeout, s.command_timeout, s.data_timeout) == (30.0, 300.0, 600.0)
    s = parse_smtp_url(
        "smtp://relay.example.com", connect_timeout=5, command_timeout=60, data_timeout=900
    )
    assert (s.connect_timeout, s.command_timeout, s.data_timeout) == (5, 60, 900)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost.", True),
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("relay.example.com", False),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "user", "password"),
    [
        ("smtp://alice:pw@relay.example.com", "alice", "pw"),
        (f"smtp://alice:{SECRET_Q}@relay.example.com", "alice", SECRET),
        ("smtp://alice%40example.com:pw@relay.example.com", "alice@example.com", "pw"),
        ("smtp://a%3Ab:p%25w%20x@relay.example.com", "a:b", "p%w x"),
        ("smtp://alice:p+w@relay.example.com", "alice", "p+w"),  # '+' is not a space here
        ("smtps://alice:pw@relay.example.com", "alice", "pw"),
    ],
)
def test_user_and_password_in_the_url_are_percent_decoded(
    url: str, user: str, password: str
) -> None:
    s = parse_smtp_url(url)
    assert (s.username, s.password) == (user, password)


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", SECRET)
    s = parse_smtp_url("smtp://alice@relay.example.com")
    assert (s.username, s.password) == ("alice", SECRET)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_password_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ending: str) -> None:
    path = tmp_path / "smtp-password"
    path.write_bytes((SECRET + ending).encode())
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(path))
    assert parse_smtp_url("smtp://alice@relay.example.com").password == SECRET


def test_password_file_keeps_inner_and_leading_spaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pw"
    path.write_text("  two words \n", encoding="utf-8")
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(path))
    assert parse_smtp_url("smtp://alice@relay.example.com").password == "  two words "


def test_password_precedence_url_then_env_then_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pw"
    path.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(path))
    assert parse_smtp_url("smtp://alice@relay.example.com").password == "from-file"
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", "from-env")
    assert parse_smtp_url("smtp://alice@relay.example.com").password == "from-env"
    assert parse_smtp_url("smtp://alice:from-url@relay.example.com").password == "from-url"


def test_no_password_is_looked_up_without_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", SECRET)
    s = parse_smtp_url("smtp://relay.example.com")
    assert (s.username, s.password) == (None, None)


@pytest.mark.parametrize("setup", ["nothing", "empty env", "empty file", "newline-only file"])
def test_user_without_any_password_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setup: str
) -> None:
    if setup == "empty env":
        monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", "")
    elif setup.endswith("file"):
        path = tmp_path / "pw"
        path.write_text("" if setup == "empty file" else "\n", encoding="utf-8")
        monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(path))
    with pytest.raises(ConfigError, match="MAILSPOOL_SMTP_PASSWORD"):
        parse_smtp_url("smtp://alice@relay.example.com")


def test_unreadable_password_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(missing))
    with pytest.raises(ConfigError, match="MAILSPOOL_SMTP_PASSWORD_FILE") as exc:
        parse_smtp_url("smtp://alice@relay.example.com")
    assert str(missing) in str(exc.value)


def test_password_file_that_is_not_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pw.bin"
    path.write_bytes(b"\xff\xfe\x00secret")
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(path))
    with pytest.raises(ConfigError, match="MAILSPOOL_SMTP_PASSWORD_FILE") as exc:
        parse_smtp_url("smtp://alice@relay.example.com")
    assert "secret" not in str(exc.value)


def test_password_without_user_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no user") as exc:
        parse_smtp_url(f"smtp://:{SECRET_Q}@relay.example.com")
    assert_no_secret(str(exc.value))


# -- no credentials over plaintext -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "smtp://alice:pw@relay.example.com?starttls=off",
        "smtp://alice:pw@relay.example.com:25?starttls=OFF",
        "smtp://alice:pw@10.0.0.5?starttls=off",
    ],
)
def test_credentials_without_tls_to_a_remote_host_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="without TLS") as exc:
        parse_smtp_url(url)
    assert "pw@" not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://alice:pw@localhost?starttls=off",  # loopback: nothing crosses the network
        "smtp://alice:pw@127.0.0.1:2525?starttls=off",
        "smtp://alice:pw@[::1]:2525?starttls=off",
        "smtp://alice:pw@relay.example.com",  # required by default
        "smtp://alice:pw@relay.example.com?starttls=opportunistic",  # checked at login
        "smtps://alice:pw@relay.example.com?starttls=off",  # implicit TLS
    ],
)
def test_credentials_allowed(url: str) -> None:
    assert parse_smtp_url(url).password == "pw"


# -- certificates ------------------------------------------------------------------------------


def test_cafile_trusts_a_private_ca(ca_file: Path) -> None:
    s = parse_smtp_url(f"smtp://relay.example.com?cafile={ca_file}")
    assert s.cafile == str(ca_file)
    ctx = s.tls_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.cert_store_stats()["x509_ca"] >= 1


def test_missing_cafile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cafile"):
        parse_smtp_url(f"smtp://relay.example.com?cafile={tmp_path / 'missing.pem'}")


def test_cafile_that_is_not_a_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cafile"):
        parse_smtp_url(f"smtp://relay.example.com?cafile={junk}")


def test_cafile_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cafile"):
        parse_smtp_url(f"smtp://relay.example.com?cafile={tmp_path}")


@pytest.mark.parametrize(
    ("query", "verify"),
    [
        ("", True),
        ("?verify=on", True),
        ("?verify=true", True),
        ("?verify=1", True),
        ("?verify=off", False),
        ("?verify=OFF", False),
        ("?verify=false", False),
        ("?verify=0", False),
        ("?verify=no", False),
    ],
)
def test_verify(query: str, verify: bool) -> None:
    s = parse_smtp_url(f"smtps://relay.example.com{query}")
    assert s.verify is verify
    ctx = s.tls_context()
    if verify:
        assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)
    else:
        assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_NONE, False)


# -- other options and bad URLs ----------------------------------------------------------------


def test_connection_options() -> None:
    s = parse_smtp_url("smtp://relay.example.com?max_age=60&max_messages=100&helo=mx1.example.com")
    assert (s.max_age, s.max_messages, s.local_hostname) == (60.0, 100, "mx1.example.com")
    s = parse_smtp_url("smtp://relay.example.com")
    assert (s.max_age, s.max_messages, s.local_hostname) == (300.0, 0, None)


@pytest.mark.parametrize("helo", ["mail.example.com", "localhost", "example.com.", "[192.0.2.1]"])
def test_helo_names(helo: str) -> None:
    assert parse_smtp_url(f"smtp://relay.example.com?helo={quote(helo)}").local_hostname == helo


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://relay.example.com", "smtp://"),
        ("relay.example.com", "smtp://"),
        ("", "smtp://"),
        ("smtp://", "no host"),
        ("smtp://:25", "no host"),
        ("smtp://relay.example.com:99999", "port"),
        ("smtp://relay.example.com:abc", "port"),
        ("smtp://relay.example.com:0", "port"),
        ("smtp://[::1", "malformed"),
        ("smtp://relay.example.com?starttls=maybe", "starttls"),
        ("smtp://relay.example.com?verify=perhaps", "verify"),
        ("smtp://relay.example.com?max_age=soon", "max_age"),
        ("smtp://relay.example.com?max_age=0", "max_age"),
        ("smtp://relay.example.com?max_age=inf", "max_age"),
        ("smtp://relay.example.com?max_messages=-1", "max_messages"),
        ("smtp://relay.example.com?helo=a%20b", "helo"),
        ("smtp://relay.example.com?helo=x%0D%0AMAIL%20FROM:%3C%3E", "helo"),  # injection
        ("smtp://relay.example.com?helo=x%0A", "helo"),
        ("smtp://relay.example.com?foo=1", "foo"),
        ("smtp://relay.example.com?tls=on", "tls"),
        ("smtp://relay.example.com?starttls=off&bogus=1&other=2", "bogus, other"),
    ],
)
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_smtp_url(url)


def test_unknown_option_error_does_not_echo_its_value() -> None:
    with pytest.raises(ConfigError, match="unknown relay URL option") as exc:
        parse_smtp_url(f"smtp://relay.example.com?password={SECRET_Q}")
    assert_no_secret(str(exc.value))


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://alice:{SECRET_Q}@relay.example.com?starttls=off",
        f"smtp://alice:{SECRET_Q}@relay.example.com?starttls=bogus",
        f"smtp://alice:{SECRET_Q}@relay.example.com?cafile=/no/such/file",
        f"smtp://alice:{SECRET_Q}@relay.example.com?x=1",
        f"smtp://alice:{SECRET_Q}@relay.example.com:99999",
        f"smtp://alice:{SECRET_Q}@[::1",
        f"http://alice:{SECRET_Q}@relay.example.com",
        f"smtp://:{SECRET_Q}@relay.example.com",
    ],
)
def test_errors_never_contain_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_smtp_url(url)
    assert_no_secret(str(exc.value))
    assert_no_secret(repr(exc.value))


# -- display: redacted, repr, redact_url -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://relay.example.com", "smtp://relay.example.com:587"),
        ("smtps://relay.example.com", "smtps://relay.example.com:465"),
        (f"smtp://alice:{SECRET_Q}@relay.example.com:2525", "smtp://alice:***@relay.example.com:2525"),
        (f"smtps://alice%40example.com:{SECRET_Q}@relay.example.com", "smtps://alice%40example.com:***@relay.example.com:465"),
        (f"smtp://alice:{SECRET_Q}@[::1]:2525", "smtp://alice:***@[::1]:2525"),
    ],
)  # fmt: skip
def test_redacted(url: str, shown: str) -> None:
    s = parse_smtp_url(url)
    assert s.redacted == shown
    assert_no_secret(s.redacted)


@pytest.mark.parametrize("source", ["url", "env", "file"])
def test_password_never_in_repr_or_str(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str
) -> None:
    url = "smtp://alice@relay.example.com"
    if source == "url":
        url = f"smtp://alice:{SECRET_Q}@relay.example.com"
    elif source == "env":
        monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", SECRET)
    else:
        (tmp_path / "pw").write_text(SECRET, encoding="utf-8")
        monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD_FILE", str(tmp_path / "pw"))
    s = parse_smtp_url(url)
    assert s.password == SECRET
    for text in (repr(s), str(s), f"{s}", s.redacted, repr([s]), repr({"relay": s})):
        assert_no_secret(text)
    assert "alice" in repr(s)


def test_settings_built_directly_hide_the_password() -> None:
    s = SMTPSettings(host="relay.example.com", port=587, username="bob", password=SECRET)
    assert_no_secret(repr(s))
    assert_no_secret(s.redacted)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        # nothing secret: unchanged, byte for byte
        ("smtp://relay.example.com:587", "smtp://relay.example.com:587"),
        ("smtp://alice@relay.example.com", "smtp://alice@relay.example.com"),
        ("sqlite:///mailspool.db", "sqlite:///mailspool.db"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("memory://", "memory://"),
        ("redis://host:6379/0?db=1", "redis://host:6379/0?db=1"),
        # passwords in the user part
        (f"smtp://alice:{SECRET_Q}@relay.example.com:587", "smtp://alice:***@relay.example.com:587"),
        ("smtp://alice:p@ss@relay.example.com", "smtp://alice:***@relay.example.com"),
        ("smtps://a%40b.com:pw@relay.example.com/?starttls=off", "smtps://a%40b.com:***@relay.example.com/?starttls=off"),
        ("redis://:pw@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("amqp://guest:guest@[::1]:5672/", "amqp://guest:***@[::1]:5672/"),
        ("smtp://alice:@relay.example.com", "smtp://alice:***@relay.example.com"),
        # passwords and tokens in the query
        ("postgresql://db/app?user=u&password=pw&sslmode=require", "postgresql://db/app?user=u&password=***&sslmode=require"),
        ("redis://host/0?token=abc#frag", "redis://host/0?token=***#frag"),
        ("postgresql://u:pw@db/app?password=pw2", "postgresql://u:***@db/app?password=***"),
        # no scheme at all
        ("alice:pw@relay.example.com:587", "alice:***@relay.example.com:587"),
        # not parseable at all
        ("smtp://alice:pw@[::1", "<unparseable URL>"),
    ],
)  # fmt: skip
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    "template",
    [
        "smtp://alice:{}@relay.example.com",
        "smtps://alice:{}@relay.example.com:465/?verify=off",
        "smtp://alice:{}@[::1]:2525",
        "redis://:{}@host:6379/0",
        "postgresql://host/db?password={}",
        "smtp://alice:{}@[::1",
        "alice:{}@relay.example.com",
    ],
)
@pytest.mark.parametrize("secret", [SECRET, "hunter2", "x@y", "pä55wörd", "a\tb\nc"])
def test_redact_url_never_contains_the_password(template: str, secret: str) -> None:
    for encoded in (quote(secret, safe=""), secret):
        assert_no_secret(redact_url(template.format(encoded)), secret)
