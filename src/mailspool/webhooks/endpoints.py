"""Webhook endpoints as given: ``--webhook [TYPES=]URL`` (repeatable; in mailspool.toml
a list of the same strings). ``TYPES`` is a comma-separated filter of event types
(``sent,dead=https://example.com/hook``); without one an endpoint gets every event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailspool.queue.events import MAX_NAME_CHARS, EventType
from mailspool.urls import redact_url
from mailspool.webhooks.http import parse_target

__all__ = ["WebhookEndpoint", "parse_webhook", "parse_webhooks"]

TYPES = ", ".join(t.value for t in EventType)


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """An endpoint: ``url`` (may hold credentials: never shown as it is), the event
    ``types`` it takes (None: every type), and its ``name``: the URL with any secret
    redacted, which keys its delivery state in the job store."""

    url: str
    types: frozenset[EventType] | None = None

    @property
    def name(self) -> str:
        return redact_url(self.url)[:MAX_NAME_CHARS]

    def wants(self, t: EventType) -> bool:
        return self.types is None or t in self.types

    def __str__(self) -> str:
        which = "every event" if self.types is None else ",".join(sorted(self.types))
        return f"{self.name} ({which})"


def parse_webhook(spec: str) -> WebhookEndpoint:
    """``URL`` or ``TYPES=URL``; ValueError saying what is wrong."""
    spec = spec.strip()
    types: frozenset[EventType] | None = None
    head, sep, rest = spec.partition("=")
    if sep and "://" not in head:
        names = [t.strip().lower() for t in head.split(",") if t.strip()]
        unknown = [n for n in names if n not in {t.value for t in EventType}]
        if unknown or not names:
            raise ValueError(
                f"unknown event type {', '.join(unknown) or '(none)'!s} in --webhook: use {TYPES}"
            )
        types = frozenset(EventType(n) for n in names)
        spec = rest.strip()
    try:
        parse_target(spec)
    except ValueError as exc:
        raise ValueError(f"--webhook {redact_url(spec)[:200]!r}: {exc}") from None
    return WebhookEndpoint(spec, types)


def parse_webhooks(specs: Iterable[str]) -> list[WebhookEndpoint]:
    """Each endpoint once (the same URL given twice is one endpoint, types merged)."""
    out: dict[str, WebhookEndpoint] = {}
    for spec in specs:
        ep = parse_webhook(spec)
        old = out.get(ep.name)
        if old is not None:
            types = None if old.types is None or ep.types is None else old.types | ep.types
            ep = WebhookEndpoint(ep.url, types)
        out[ep.name] = ep
    return list(out.values())
