"""The relay URL: ``smtp://[user[:password]@]host[:port][?starttls=...&cafile=...]`` and
``smtps://`` (implicit TLS). Passwords may come from the environment or a file, and are
never part of any string this module produces for display."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from mailspool.errors import ConfigError

STARTTLS_MODES = ("required", "opportunistic", "off")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SMTPSettings:
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

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def redacted(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _password(raw: str | None) -> str | None:
    if raw:
        return unquote(raw)
    env = os.environ.get("MAILSPOOL_SMTP_PASSWORD")
    if env:
        return env
    path = os.environ.get("MAILSPOOL_SMTP_PASSWORD_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"MAILSPOOL_SMTP_PASSWORD_FILE: cannot read {path}: {exc.strerror}") from None
    return None


def _flag(q: dict[str, list[str]], name: str, default: str) -> str:
    return q.get(name, [default])[-1].lower()


def parse_smtp_url(url: str, **timeouts: float) -> SMTPSettings:
    """Parse and check a relay URL. ``timeouts`` override connect/command/data timeouts."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError("the relay URL must start with smtp:// or smtps://")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError("the relay URL has an invalid port") from None
    if not host:
        raise ConfigError("the relay URL has no host")
    implicit = scheme == "smtps"
    q = parse_qs(parts.query)
    unknown = set(q) - {"starttls", "cafile", "verify", "max_age", "max_messages", "helo"}
    if unknown:
        raise ConfigError(f"unknown relay URL option(s): {', '.join(sorted(unknown))}")
    starttls = _flag(q, "starttls", "opportunistic" if is_loopback(host) else "required")
    if starttls not in STARTTLS_MODES:
        raise ConfigError(f"starttls must be one of {', '.join(STARTTLS_MODES)}")
    verify = _flag(q, "verify", "on")
    if verify not in ("on", "off", "true", "false", "1", "0"):
        raise ConfigError("verify must be on or off")
    cafile = q.get("cafile", [None])[-1]
    if cafile and not Path(cafile).is_file():
        raise ConfigError(f"cafile {cafile} does not exist")
    username = unquote(parts.username) if parts.username else None
    password = _password(parts.password) if username else None
    if username and password is None:
        raise ConfigError(
            "the relay URL names a user but no password was found: set MAILSPOOL_SMTP_PASSWORD"
            " or MAILSPOOL_SMTP_PASSWORD_FILE"
        )
    if username and not implicit and starttls == "off" and not is_loopback(host):
        raise ConfigError("refusing to send credentials without TLS: remove starttls=off")
    try:
        max_age = float(_flag(q, "max_age", "300"))
        max_messages = int(_flag(q, "max_messages", "0"))
    except ValueError:
        raise ConfigError("max_age and max_messages must be numbers") from None
    return SMTPSettings(
        host=host,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls="off" if implicit else starttls,
        username=username,
        password=password,
        cafile=cafile,
        verify=verify in ("on", "true", "1"),
        max_age=max_age,
        max_messages=max_messages,
        local_hostname=q.get("helo", [None])[-1],
        **timeouts,
    )


def redact_url(url: str) -> str:
    """A URL with any password replaced by ***, for logs and summaries."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return parts._replace(netloc=f"{user}:***@{netloc}").geturl()
    except ValueError:
        return "<unparseable URL>"
