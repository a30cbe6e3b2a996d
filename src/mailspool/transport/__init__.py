"""Transports: SMTP (pooled, pipelined) and the .eml outbox."""

from __future__ import annotations

from mailspool.transport.base import Delivery, Envelope, Transport
from mailspool.transport.outbox import OutboxTransport
from mailspool.transport.smtp import SMTPTransport
from mailspool.transport.url import SMTPSettings, parse_smtp_url, redact_url

__all__ = [
    "Delivery",
    "Envelope",
    "OutboxTransport",
    "SMTPSettings",
    "SMTPTransport",
    "Transport",
    "parse_smtp_url",
    "redact_url",
]
