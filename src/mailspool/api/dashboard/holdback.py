"""Why a campaign is not going faster, in words, from what the status tells: the reply
its waiting jobs were handed back with (``relay paused: ...``, ``held back: PROVIDER
...``, ``waiting for the send window: ...``: delivery/parking.py, shaping.py,
windows.py), the relays and providers the workers published, the server's own rate
limit and relay gates, and the campaign's schedule. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: a rate this close to the limit is the limit's doing
AT_LIMIT = 0.8


@dataclass(frozen=True, slots=True)
class Situation:
    """What is known of one campaign now. ``last_error``: the last reply of its latest
    deferred job; ``next_due``: when its earliest pending job is due (Unix time);
    ``rate``: its final jobs a second lately; ``limit``: the server's ``--rate`` (a
    second); ``gates_paused``: relays of this server's own workers paused now."""

    pending: int
    deferred: int = 0
    paused: bool = False
    last_error: str = ""
    next_due: float | None = None
    rate: float | None = None
    limit: float | None = None
    gates_paused: int = 0
    schedule: dict[str, Any] | None = None
    relays: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)


def when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def held_by(s: Situation, now: float) -> list[dict[str, str]]:
    """Each limit that holds the campaign back now: ``{"limit": kind, "detail": text}``
    with kind ``paused``, ``relay``, ``provider``, ``window``, ``rate`` or ``retry``;
    empty when nothing is pending or nothing is known to hold it."""
    if s.pending == 0:
        return []
    waiting = s.next_due is not None and s.next_due > now
    found = [("paused", "the campaign is paused")] if s.paused else []
    found += relays(s, waiting) + providers(s)
    if s.last_error.startswith("waiting for the send window") or (waiting and s.schedule):
        found.append(("window", f"send window: next due {when(s.next_due or now)}"))
    if s.limit and s.rate is not None and s.rate >= AT_LIMIT * s.limit:
        found.append(("rate", f"rate limit {s.limit:g}/s"))
    if not found and waiting and s.deferred and s.next_due is not None:
        found.append(("retry", f"waiting for retries: next due {when(s.next_due)}"))
    return [{"limit": kind, "detail": detail} for kind, detail in found]


def relays(s: Situation, waiting: bool) -> list[tuple[str, str]]:
    """Paused relays: as published (several relays), this server's own paused relay
    gates, or the reply the waiting jobs were handed back with."""
    found = [
        ("relay", f"relay {r.get('name')} paused: {r.get('reason') or 'no reason given'}")
        for r in s.relays
        if r.get("state") == "paused"
    ]
    if not found and s.gates_paused:
        found.append(("relay", "the relay is paused (see the latest deferrals)"))
    if not found and waiting and s.last_error.startswith("relay paused"):
        found.append(("relay", s.last_error))
    return found


def providers(s: Situation) -> list[tuple[str, str]]:
    """Providers suspended or slowed by their throttling replies, or the reply the
    waiting jobs were held back with."""
    found = []
    for p in s.providers:
        name = p.get("name")
        if p.get("suspended_for"):
            detail = f"{name} suspended for {p['suspended_for']:g}s: {p.get('last_reply')}"
            found.append(("provider", detail))
        elif p.get("rate") is not None and p.get("ceiling") and p["rate"] < p["ceiling"]:
            slowed = f"{name} slowed to {p['rate']:.3g}/s of {p['ceiling']:.3g}/s"
            found.append(("provider", slowed))
    if not found and s.last_error.startswith("held back:"):
        found.append(("provider", s.last_error.removeprefix("held back: ")))
    return found
