"""What workers publish of their relays and providers for ``status``, the API and the
metrics: each worker writes its own entry under a key of the campaign settings store
that no campaign can take (names never start with ``~``); readers merge the entries of
the workers heard from lately. A display, never a decision, reads it: two workers
writing at once may lose one entry until its next write."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from mailspool.errors import QueueError
from mailspool.transport.base import Transport

if TYPE_CHECKING:
    from mailspool.delivery.shaping import Shaper

__all__ = ["PROVIDERS_KEY", "RELAYS_KEY", "publish", "publish_states", "published"]

RELAYS_KEY = "~relays"
PROVIDERS_KEY = "~providers"
#: how often a worker publishes (seconds), and when a silent worker's entry is dropped
PUBLISH_EVERY = 5.0
FORGET_AFTER = 600.0
#: the figures summed over workers; the others are the latest writer's
_SUMMED = {RELAYS_KEY: ("sent", "failed"), PROVIDERS_KEY: ("sent", "throttled", "in_flight")}


class _SettingsStore(Protocol):
    async def campaign_settings(self, campaign: str) -> dict[str, Any]: ...

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None: ...


async def publish(
    store: _SettingsStore, key: str, owner: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Record this worker's ``rows`` under ``key`` (a worker silent for
    :data:`FORGET_AFTER` seconds is dropped)."""
    now = time.time()
    data = await store.campaign_settings(key)
    owners = {
        o: v
        for o, v in dict(data.get("owners") or {}).items()
        if isinstance(v, dict) and now - float(v.get("at") or 0) < FORGET_AFTER
    }
    owners[owner] = {"at": now, "rows": list(rows)}
    await store.set_campaign_settings(key, {"owners": owners})


async def publish_states(
    store: object,
    owner: str,
    transport: Transport,
    shaper: Shaper | None = None,
    *,
    once: bool = False,
) -> None:
    """The relays' states (with several relays) and the providers' (when shaping), every
    :data:`PUBLISH_EVERY` seconds until cancelled (``once``: now only)."""
    from mailspool.delivery.relays import RelaySet  # several relays only: not at start-up

    relays = isinstance(transport, RelaySet)
    if not (relays or shaper is not None) or not hasattr(store, "set_campaign_settings"):
        return
    settings: _SettingsStore = store  # type: ignore[assignment]
    while True:
        with contextlib.suppress(QueueError):
            if isinstance(transport, RelaySet):
                await publish(settings, RELAYS_KEY, owner, [asdict(s) for s in transport.states()])
            if shaper is not None and shaper.states():
                rows = [asdict(s) for s in shaper.states()]
                await publish(settings, PROVIDERS_KEY, owner, rows)
        if once:
            return
        await asyncio.sleep(PUBLISH_EVERY)


async def published(store: _SettingsStore, key: str = RELAYS_KEY) -> list[dict[str, Any]]:
    """Every relay (or provider) the workers published, by name: its state as the worker
    that wrote last saw it, its counts summed over the workers, ``at`` when."""
    data = await store.campaign_settings(key)
    now = time.time()
    summed = _SUMMED.get(key, ())
    out: dict[str, dict[str, Any]] = {}
    entries = sorted(
        (v for v in dict(data.get("owners") or {}).values() if isinstance(v, dict)),
        key=lambda v: float(v.get("at") or 0),
    )
    for entry in entries:
        at = float(entry.get("at") or 0)
        if now - at >= FORGET_AFTER:
            continue
        for r in entry.get("rows") or entry.get("relays") or []:
            row = out.setdefault(r["name"], {"name": r["name"]} | dict.fromkeys(summed, 0))
            for name in summed:
                row[name] += int(r.get(name) or 0)
            row.update({k: v for k, v in r.items() if k not in summed}, at=at)
    return sorted(out.values(), key=lambda r: str(r["name"]))
