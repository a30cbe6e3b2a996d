"""What a webhook request carries: one event as JSON, shaped as the Standard Webhooks
specification recommends (``type``, ``timestamp``, ``data``).

``data`` always names ``event_id``, ``cursor`` (for ``GET /v1/events?after=``),
``job_id``, ``campaign``, ``recipient`` (the first) and ``recipients``; then, by type:
``reply``, ``reason`` and ``attempts`` for a job's outcomes (sent, deferred, dead,
ambiguous, suppressed); ``status``, ``diagnostic`` and ``permanent`` for bounced and
complained; ``list`` and ``source`` for unsubscribed. ``job_id`` and ``campaign`` are
null where no job is named (an unsubscribe from a mailto request naming none).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from mailspool.queue.events import Event, EventType

__all__ = ["event_body", "event_dict", "iso_time"]

_RETURNED = (EventType.BOUNCED, EventType.COMPLAINED)


def iso_time(at: float) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z``."""
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_dict(e: Event, event_id: str | None = None) -> dict[str, Any]:
    """The payload of ``e`` (``event_id``: its id, when already computed)."""
    data: dict[str, Any] = {
        "event_id": event_id or e.id,
        "cursor": e.cursor,
        "job_id": e.job_id or None,
        "campaign": e.campaign or None,
        "recipient": e.recipients[0] if e.recipients else None,
        "recipients": list(e.recipients),
    }
    if e.type in _RETURNED:
        data |= {"status": e.reason or None, "diagnostic": e.detail, "permanent": e.permanent}
    elif e.type is EventType.UNSUBSCRIBED:
        data |= {"list": e.detail or None, "source": e.reason}
    else:
        data |= {"reply": e.detail, "reason": e.reason or None, "attempts": e.attempts}
    return {"type": e.type.value, "timestamp": iso_time(e.at), "data": data}


def event_body(e: Event, event_id: str | None = None) -> bytes:
    """The request body: compact JSON, UTF-8."""
    return _ENCODE(event_dict(e, event_id)).encode()


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
