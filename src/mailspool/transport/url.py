"""The relay URL: ``smtp://[user[:password]@]host[:port][?starttls=...&cafile=...]`` and
``smtps://`` (implicit TLS). Passwords may come from the environment or a file, and are
never part of any string this module produces for display; ``?auth=xoauth2`` or
``?auth=oauthbearer`` take an OAuth2 token instead (transport/oauth2.py)."""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

from mailspool.errors import ConfigError
from mailspool.urls import is_loopback, redact_url

if TYPE_CHECKING:
    from mailspool.transport.oauth2 import TokenSource

STARTTLS_MODES = ("required", "opportunistic", "off")
OPTIONS = frozenset(("starttls", "cafile", "verify", "max_age", "max_messages", "helo", "auth"))
_ON, _OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fullmatch
_ADDRESS_LITERAL = re.compile(r"\[(?:IPv6:)?[0-9A-Fa-f:.]+\]")  # fullmatch


@dataclass(frozen=True)
class SMTPSettings:
    """A relay as its URL describes it (see :func:`parse_smtp_url`), with the timeouts
    in seconds. ``starttls`` is required, opportunistic or off; ``max_age`` and
    ``max_messages`` bound how long and for how many messages a connection is reused."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "required"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    verify: bool = True
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_age: float = 300.0
    max_messages: int = 0  # per connection; 0 = no limit
    local_hostname: str | None = None
    #: the SASL mechanism when OAuth2 (``?auth=xoauth2`` or ``oauthbearer``), and where
    #: its token comes from; None: a password with PLAIN or LOGIN
    auth: str | None = None
    oauth2: TokenSource | None = field(default=None, repr=False, compare=False)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def redacted(self) -> str:
        """The relay as a URL for logs and summaries: the user is shown, never the password."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        secret = "" if self.auth else ":***"
        user = f"{quote(self.username, safe='')}{secret}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?auth={self.auth}" if self.auth else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"

    def tls_context(self) -> ssl.SSLContext:
        return client_tls_context(self.cafile, self.verify)


def url_password(raw: str | None, variable: str = "MAILSPOOL_SMTP_PASSWORD") -> str | None:
    """The password from the URL, else the environment ``variable``, else the file named
    by ``variable``_FILE (its trailing newline removed). Empty counts as unset. (The
    IMAP mailbox's password is read the same way, from MAILSPOOL_IMAP_PASSWORD.)"""
    if raw:
        return unquote(raw)
    env = os.environ.get(variable)
    if env:
        return env
    path = os.environ.get(f"{variable}_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not readable as UTF-8 text"
            raise ConfigError(f"{variable}_FILE: cannot read {path}: {why}") from None
        return text.rstrip("\r\n") or None
    return None


def _flag(q: dict[str, list[str]], name: str, default: str) -> str:
    return q.get(name, [default])[-1].lower()


def parse_smtp_url(
    url: str, password_variable: str = "MAILSPOOL_SMTP_PASSWORD", /, **timeouts: float
) -> SMTPSettings:
    """Parse and check a relay URL. ``password_variable`` names the environment variable
    a password comes from when the URL has none (a relay of a set may have its own);
    ``timeouts`` override connect/command/data timeouts.

    Every problem is a :class:`ConfigError` whose message never contains the password.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        raise ConfigError(f"the relay URL {redact_url(url)} is malformed") from None
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("the relay URL has an invalid port") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError("the relay URL must start with smtp:// or smtps://")
    if not host:
        raise ConfigError("the relay URL has no host")
    if port == 0:
        raise ConfigError("the relay URL has an invalid port")
    implicit = scheme == "smtps"
    q = parse_qs(parts.query)
    unknown = set(q) - OPTIONS
    if unknown:
        raise ConfigError(f"unknown relay URL option(s): {', '.join(sorted(unknown))}")
    starttls = _flag(q, "starttls", "opportunistic" if is_loopback(host) else "required")
    if starttls not in STARTTLS_MODES:
        raise ConfigError(f"starttls must be one of {', '.join(STARTTLS_MODES)}")
    verify = _flag(q, "verify", "on")
    if verify not in _ON + _OFF:
        raise ConfigError("verify must be on or off")
    cafile = check_cafile(q.get("cafile", [None])[-1])
    helo = q.get("helo", [None])[-1]
    if helo is not None and not _valid_helo(helo):
        raise ConfigError("helo must be a host name or an address literal such as [192.0.2.1]")
    username, password, auth, oauth2 = _login(parts.username, parts.password, q, password_variable)
    if username and not implicit and starttls == "off" and not is_loopback(host):
        raise ConfigError("refusing to send credentials without TLS: remove starttls=off")
    max_age, max_messages = _connection_limits(q)
    return SMTPSettings(
        host=host,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls="off" if implicit else starttls,
        username=username,
        password=password,
        cafile=cafile,
        verify=verify in _ON,
        max_age=max_age,
        max_messages=max_messages,
        local_hostname=helo,
        auth=auth,
        oauth2=oauth2,
        **timeouts,
    )


def _login(
    raw_user: str | None, raw_password: str | None, q: dict[str, list[str]], variable: str
) -> tuple[str | None, str | None, str | None, TokenSource | None]:
    """The user, password, OAuth2 mechanism (``?auth=``) and token source: a password
    (from the URL or the environment) without ``?auth=``, a token source with it."""
    given = q.get("auth", [None])[-1]
    if given is None:
        return (*_credentials(raw_user, raw_password, variable), None, None)
    from mailspool.transport.oauth2 import MECHANISMS, token_source  # with ?auth= only

    auth = given.lower()
    if auth not in MECHANISMS:
        raise ConfigError(f"auth must be one of {', '.join(MECHANISMS)}")
    if not raw_user:
        raise ConfigError(f"auth={auth} needs the user (the mailbox) in the relay URL")
    if raw_password:
        raise ConfigError(f"auth={auth} takes a token, not a password: remove it from the URL")
    return unquote(raw_user), None, auth, token_source(auth)


def _valid_helo(name: str) -> bool:
    """A domain name or an address literal: nothing that could end the EHLO line."""
    if _ADDRESS_LITERAL.fullmatch(name):
        return True
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _credentials(
    raw_user: str | None, raw_password: str | None, variable: str
) -> tuple[str | None, str | None]:
    username = unquote(raw_user) if raw_user else None
    if not username:
        if raw_password:
            raise ConfigError("the relay URL has a password but no user name")
        return None, None
    password = url_password(raw_password, variable)
    if password is None:
        raise ConfigError(
            f"the relay URL names a user but no password was found: set {variable}"
            f" or {variable}_FILE"
        )
    return username, password


def _connection_limits(q: dict[str, list[str]]) -> tuple[float, int]:
    """How long (seconds) and for how many messages one connection is reused."""
    try:
        max_age = float(_flag(q, "max_age", "300"))
        max_messages = int(_flag(q, "max_messages", "0"))
    except ValueError:
        raise ConfigError("max_age and max_messages must be numbers") from None
    if not 0 < max_age < float("inf") or max_messages < 0:
        raise ConfigError("max_age must be a positive number of seconds, max_messages 0 or more")
    return max_age, max_messages


def check_cafile(cafile: str | None) -> str | None:
    """``cafile`` when it names a file of usable CA certificates (None: none given)."""
    if not cafile:
        return None
    if not Path(cafile).is_file():
        raise ConfigError(f"cafile {cafile} does not exist")
    try:
        ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"cafile {cafile} holds no usable CA certificate: {exc}") from None
    return cafile


def client_tls_context(cafile: str | None, verify: bool) -> ssl.SSLContext:
    """A client's TLS context: certificates checked against ``cafile`` (None: the system's
    store), or not at all when ``verify`` is False (``?verify=off``, for tests)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
