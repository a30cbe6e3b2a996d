"""Transports: SMTP (pooled, pipelined) and the .eml outbox, chosen by the relay URL's
scheme (no relay: the outbox)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mailspool.transport.base import Delivery, Envelope, Transport
from mailspool.transport.outbox import OutboxTransport
from mailspool.urls import Plugins

if TYPE_CHECKING:
    from mailspool.transport.smtp import SMTPTransport
    from mailspool.transport.url import SMTPSettings, parse_smtp_url

#: SMTP's names, imported when first asked for (aiosmtplib, OAuth2: 15 ms): the commands
#: that send nothing, and an outbox, need none of them; TRANSPORTS loads them by name
_LAZY = {
    "SMTPTransport": "mailspool.transport.smtp",
    "SMTPSettings": "mailspool.transport.url",
    "parse_smtp_url": "mailspool.transport.url",
}

__all__ = [
    "TRANSPORTS",
    "Delivery",
    "Envelope",
    "OutboxTransport",
    "SMTPSettings",
    "SMTPTransport",
    "Transport",
    "parse_smtp_url",
]

TRANSPORTS: Plugins[Transport] = Plugins(
    "relay URL",
    {
        "smtp": "mailspool.transport.smtp:SMTPTransport",
        "smtps": "mailspool.transport.smtp:SMTPTransport",
    },
    "the relay URL must start with smtp:// or smtps://",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY.keys())
