"""Every error mailspool raises derives from :class:`MailspoolError`.

::

    MailspoolError
    ├── ConfigError                 bad option, URL or settings (exit 2)
    ├── SourceError                 unreadable or undecodable input file (exit 2)
    ├── TemplateError               template syntax error (exit 2)
    ├── RejectedRow                 one row failed validation: .row .field .reason
    ├── QueueError                  the queue or job store failed
    │   └── MissingExtra            an optional backend's package is not installed
    └── DeliveryError               one SMTP attempt failed: .code .enhanced .stage .text
        ├── ReplyError              the server answered with an error reply
        ├── ConnectError(ConnectionError)   refused, reset, closed, DNS
        ├── SMTPTimeout(TimeoutError)       connect / command / final-dot timeout
        ├── TLSFailure              handshake or certificate failure, or STARTTLS unavailable
        └── AuthFailure             535 and friends, or credentials refused over plaintext

Delivery errors carry structured fields (the :class:`Stage` among them) so that
:mod:`mailspool.delivery.classify` can decide what happens to the job without parsing text.
"""

from __future__ import annotations

import enum


class MailspoolError(Exception):
    """Root of every mailspool exception."""


class ConfigError(MailspoolError):
    """An option, URL or setting is invalid."""


class SourceError(MailspoolError):
    """An input file cannot be read or decoded."""


class TemplateError(MailspoolError):
    """A template has a syntax error or a malformed header block."""


class RejectedRow(MailspoolError):
    """A row failed validation and is not queued."""

    def __init__(self, field: str, reason: str, row: int | None = None) -> None:
        super().__init__(
            f"row {row}: {field}: {reason}" if row is not None else f"{field}: {reason}"
        )
        self.row = row
        self.field = field
        self.reason = reason

    def at_row(self, row: int) -> RejectedRow:
        return RejectedRow(self.field, self.reason, row)


class QueueError(MailspoolError):
    """The queue or job store failed."""


class MissingExtra(QueueError, ConfigError):
    """An optional backend needs a package that is not installed."""

    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"this backend needs the {package!r} package: pip install 'mailspool[{extra}]'"
        )


class Stage(enum.StrEnum):
    """Where in an SMTP session a delivery attempt failed. The values are what logs, span
    attributes and stored replies show; compare members with ``is``."""

    CONNECT = "connect"
    GREETING = "greeting"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    RSET = "rset"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    #: the reply to the final dot: the message was transmitted
    DOT = "dot"
    QUIT = "quit"
    #: writing a command to a connection found closed, before any reply was due
    WRITE = "write"
    #: a connection lost between commands; raised under the stage of the command that
    #: next waits for a reply, never under this one
    REPLY = "reply"


class DeliveryError(MailspoolError):
    """One delivery attempt failed.

    ``text`` is the server's reply text (or what went wrong, when there was no reply);
    ``code`` and ``enhanced`` the reply code and the RFC 3463 enhanced status code, if
    any; ``stage`` where in the session it failed (a :class:`Stage`, or its value);
    ``refused`` each recipient's reply when every RCPT was refused.
    """

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        stage: Stage | str = Stage.CONNECT,
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {text}" if code else text)
        #: per-recipient replies when every RCPT was refused
        self.refused = refused or {}
        self.code = code
        self.enhanced = enhanced
        self.stage = Stage(stage)  # a value given as text becomes the member
        self.text = text

    @property
    def reply(self) -> str:
        """The reply as one line for the job store, e.g. ``451 4.7.1 try later``."""
        parts = [str(self.code) if self.code else "", self.enhanced or "", self.text]
        return " ".join(p for p in parts if p)[:500]


class ReplyError(DeliveryError):
    """The server answered an error reply."""


class ConnectError(DeliveryError, ConnectionError):
    """The connection was refused, reset or closed."""


class SMTPTimeout(DeliveryError, TimeoutError):
    """The server did not answer in time."""


class TLSFailure(DeliveryError):
    """TLS could not be established (handshake, certificate, or STARTTLS not offered)."""


class AuthFailure(DeliveryError):
    """The relay refused our credentials, or we refused to send them in plaintext."""
