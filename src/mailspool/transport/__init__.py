"""Transports: SMTP (pooled, pipelined) and the .eml outbox, chosen by the relay URL's
scheme (no relay: the outbox)."""

from __future__ import annotations

from mailspool.transport.base import Delivery, Envelope, Transport
from mailspool.transport.outbox import OutboxTransport
from mailspool.transport.smtp import SMTPTransport
from mailspool.transport.url import SMTPSettings, parse_smtp_url
from mailspool.urls import Plugins

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
