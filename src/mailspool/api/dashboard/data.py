"""The dashboard's own JSON, under ``/ui/api`` (the session cookie or a bearer token):
views composed for its pages, read every couple of seconds. Not part of the API's
contract (docs/api.md): a script should use ``/v1``. What changes something goes
through ``/v1`` (dead letters, suppressions, a campaign's pause and resume), with the
session's CSRF token.

::

    GET /ui/api/campaigns           every campaign: counts, rate, ETA, what holds it back
    GET /ui/api/campaigns/{name}    one campaign, with its outcomes by recipient domain
                                    and the latest deferral and dead-letter replies
    GET /ui/api/messages?q=         messages by id or recipient address, with their attempts
    GET /ui/api/suppressions?q=     suppressions whose address starts with q
"""

from __future__ import annotations

import email.parser
import email.policy
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from mailspool.api.auth import authorized
from mailspool.api.dashboard.digest import CampaignDigest, EventDigest
from mailspool.api.dashboard.holdback import Situation, held_by
from mailspool.api.routes import Svc, message_status
from mailspool.api.service import Service
from mailspool.api.suppressions import entry_out
from mailspool.delivery.published import PROVIDERS_KEY, published
from mailspool.models import CampaignState, CampaignStats, State, job_id
from mailspool.queue.returns import clean_text

#: campaigns listed at most (the queue's first, by name)
MAX_CAMPAIGNS = 200
MAX_FOUND = 20

data = APIRouter(prefix="/ui/api", dependencies=[Depends(authorized)], include_in_schema=False)


def iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds") if at else None


async def digest(request: Request) -> EventDigest | None:
    """The app's event digest, brought up to date (None: the queue keeps no events)."""
    found: EventDigest | None = getattr(request.app.state, "digest", None)
    if found is None:
        svc: Service = request.app.state.service
        try:
            log = svc.q.events
        except NotImplementedError:
            return None
        found = request.app.state.digest = EventDigest(log)
    await found.refresh()
    return found


Digest = Annotated[EventDigest | None, Depends(digest)]


async def campaign_row(
    svc: Service,
    name: str,
    st: CampaignStats,
    relays: list[dict[str, Any]],
    providers: list[dict[str, Any]],
) -> dict[str, Any]:
    """A campaign's figures: counts by state (returned mail beside them), progress, rate,
    ETA, and what holds it back."""
    returned = await svc.q.returns.counts(name)
    settings = await svc.q.campaign_settings(name)
    state = (await svc.q.campaign_states([name])).get(name, CampaignState.ACTIVE)
    rate = svc.rates.rate(name, st.get(State.SENT) + st.get(State.DEAD))
    eta = 0.0 if st.pending == 0 else round(st.pending / rate, 1) if rate else None
    situation = Situation(
        pending=st.pending,
        deferred=st.get(State.DEFERRED),
        paused=state is CampaignState.PAUSED,
        last_error=st.last_error,
        next_due=st.next_due if st.pending else None,
        rate=rate,
        limit=svc.settings.rate_per_second,
        gates_paused=sum(1 for w in svc.workers if w.gate.paused),
        schedule=settings.get("schedule"),
        relays=relays,
        providers=providers,
    )
    return {
        "campaign": name,
        "state": state.value,
        "counts": {s.value: st.get(s) for s in State},
        "returns": {
            "bounced": returned.bounced,
            "soft_bounced": returned.soft_bounced,
            "complained": returned.complained,
        },
        "total": st.total,
        "pending": st.pending,
        "ambiguous": st.ambiguous,
        "rate_per_s": None if rate is None else round(rate, 2),
        "eta_s": eta,
        "next_due_at": iso(st.next_due) if st.pending else None,
        "last_error": clean_text(st.last_error, 300),
        "held_by": held_by(situation, time.time()),
    }


def published_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r | {"at": iso(r.get("at")), "last_reply_at": iso(r.get("last_reply_at"))} for r in rows
    ]


def digest_view(found: CampaignDigest | None) -> dict[str, Any]:
    if found is None:
        return {"domains": [], "deferrals": [], "deaths": [], "series": []}
    domains = sorted(found.domains.items(), key=lambda kv: -sum(kv[1].values()))
    return {
        "domains": [{"domain": d, **counts} for d, counts in domains],
        "deferrals": [asdict(s) | {"at": iso(s.at)} for s in reversed(found.deferrals)],
        "deaths": [asdict(s) | {"at": iso(s.at)} for s in reversed(found.deaths)],
        "series": list(found.series),
    }


@data.get("/campaigns")
async def campaigns(svc: Svc) -> dict[str, Any]:
    relays = await published(svc.q)
    providers = await published(svc.q, PROVIDERS_KEY)
    names = await svc.q.campaigns()
    rows = [
        await campaign_row(svc, n, await svc.q.stats(n), relays, providers)
        for n in names[:MAX_CAMPAIGNS]
    ]
    return {
        "campaigns": rows,
        "more": len(names) > MAX_CAMPAIGNS,
        "relays": published_rows(relays),
        "providers": published_rows(providers),
        "rate_limit": svc.settings.rate_per_second,
    }


@data.get("/campaigns/{name}")
async def campaign(svc: Svc, found: Digest, name: str) -> dict[str, Any]:
    st = await svc.q.stats(name)
    if st.total == 0:
        raise HTTPException(404, "no such campaign")
    relays = await published(svc.q)
    providers = await published(svc.q, PROVIDERS_KEY)
    row = await campaign_row(svc, name, st, relays, providers)
    return row | {
        **digest_view(found.campaign(name) if found else None),
        "events_read": found.read if found else 0,
        "caught_up": found.caught_up if found else True,
        "now": time.time(),
        "relays": published_rows(relays),
        "providers": published_rows(providers),
        "rate_limit": svc.settings.rate_per_second,
    }


def subject_of(message: bytes) -> str:
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(message)
        return clean_text(str(headers.get("Subject", "")), 300)
    except (ValueError, TypeError, LookupError):
        return ""


@data.get("/messages")
async def messages(
    svc: Svc, found: Digest, q: Annotated[str, Query(min_length=1, max_length=400)]
) -> dict[str, Any]:
    """By id, or by recipient address: the job a CSV send made for it in each campaign
    (its key is the address), and those the event log has seen it in."""
    wanted = q.strip()
    ids: list[str] = [wanted]
    if "@" in wanted:
        address = wanted.lower()
        ids = [job_id(c, address) for c in (await svc.q.campaigns())[:MAX_CAMPAIGNS]]
        ids += found.jobs_of(address) if found else []
    out = []
    for jid in dict.fromkeys(ids):
        job = await svc.q.get(jid)
        if job is None:
            continue
        status = (await message_status(svc, job)).model_dump()
        trail = [asdict(s) | {"at": iso(s.at)} for s in (found.trail(job.id) if found else [])]
        out.append(
            status
            | {"recipients": list(job.recipients), "subject": subject_of(job.message)}
            | {"attempt_log": trail}
        )
        if len(out) >= MAX_FOUND:
            break
    return {"messages": out}


def before(prefix: str) -> tuple[str, str]:
    """A position just before every entry whose address starts with ``prefix``: keys
    are ASCII, so nothing sorts between it and the first of them (U+10FFFF sorts after
    every ASCII character in every backend's order: code points, or UTF-8 bytes)."""
    last = prefix[-1]
    return (
        (prefix[:-1] + chr(ord(last) - 1) + "\U0010ffff", "\U0010ffff") if ord(last) else ("", "")
    )


@data.get("/suppressions")
async def search_suppressions(
    svc: Svc, q: Annotated[str, Query(min_length=1, max_length=400)]
) -> dict[str, Any]:
    """The entries whose address (or @domain) starts with ``q``, the first 100."""
    prefix = q.strip().lower()
    if not prefix:
        return {"entries": []}
    page = await svc.q.suppressions.entries(limit=MAX_FOUND * 5, after=before(prefix))
    now = time.time()
    return {"entries": [entry_out(e, now) for e in page if e.address.startswith(prefix)]}
