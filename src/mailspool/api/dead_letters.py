"""Dead letters over HTTP, as ``mailspool dlq`` on the command line: ``GET
/v1/dead-letters`` lists them, ``POST /v1/dead-letters/retry`` queues them again and
``POST /v1/dead-letters/purge`` deletes them. The filters are ``dlq``'s (campaign,
reason, since, ids), all combined; a letter is shown in full by ``GET /v1/messages/{id}``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mailspool.api.auth import authorized
from mailspool.api.bodies import MAX_BATCH, RetryFilter, RetryResult
from mailspool.api.intake import error
from mailspool.api.routes import AUTH, BODY, JSON_BODY, Svc, invalid
from mailspool.config import parse_duration
from mailspool.models import DeadReason, Job
from mailspool.queue import DeadFilter

DEFAULT_LIMIT = 100


class DeadLetterOut(BaseModel):
    """A dead letter as ``dlq list --json`` shows it."""

    id: str
    campaign: str
    recipients: list[str]
    reason: str = Field(description="the dead-letter reason (docs/retries.md)")
    last_reply: str = Field(description="the relay's last reply, or why it was never sent")
    attempts: int
    message_id: str
    updated_at: str = Field(description="when it died")


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterOut] = Field(description="those that died first first")
    more: bool = Field(description="more match than the limit")


class PurgeResult(BaseModel):
    purge: int


dead_letters = APIRouter(prefix="/v1/dead-letters", dependencies=[Depends(authorized)])


def dead_row(job: Job) -> DeadLetterOut:
    return DeadLetterOut(
        id=job.id,
        campaign=job.campaign,
        recipients=list(job.recipients),
        reason=job.dead_reason,
        last_reply=job.last_reply,
        attempts=job.attempts,
        message_id=job.message_id,
        updated_at=datetime.fromtimestamp(job.updated_at, UTC).isoformat(timespec="milliseconds"),
    )


def dead_filter(
    campaign: str | None, reason: DeadReason | None, since: str | None, ids: list[str]
) -> DeadFilter:
    """The filter of these fields; ValueError for a bad ``since``."""
    after = time.time() - parse_duration(since) if since else None
    return DeadFilter(campaign or None, reason.value if reason else None, after, tuple(ids))


@dead_letters.get(
    "",
    response_model=DeadLetterPage,
    responses={**AUTH},
    summary="Dead letters (the filters of mailspool dlq list)",
)
async def list_dead(
    svc: Svc,
    campaign: Annotated[str | None, Query(max_length=200)] = None,
    reason: Annotated[DeadReason | None, Query()] = None,
    since: Annotated[
        str | None, Query(max_length=40, description="only those newer than this: 2h, 30m")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = DEFAULT_LIMIT,
) -> Any:
    try:
        flt = dead_filter(campaign, reason, since, [])
    except ValueError as exc:
        return invalid([error(None, "since", str(exc))])
    jobs = await svc.q.dead_letters(flt, limit + 1)
    return DeadLetterPage(dead_letters=[dead_row(j) for j in jobs[:limit]], more=len(jobs) > limit)


@dead_letters.post(
    "/retry",
    response_model=RetryResult,
    responses={**AUTH, **BODY},
    summary="Queue dead letters again (the filters of mailspool dlq retry)",
    dependencies=JSON_BODY,
)
async def retry_dead(svc: Svc, flt: RetryFilter) -> Any:
    try:
        found = dead_filter(flt.campaign, flt.reason, flt.since, flt.ids)
    except ValueError as exc:
        return invalid([error(None, "since", str(exc))])
    n = await svc.q.retry_dead(found)
    svc.log.info("dead letters queued again", count=n, campaign=flt.campaign, reason=found.reason)
    return RetryResult(retry=n)


@dead_letters.post(
    "/purge",
    response_model=PurgeResult,
    responses={**AUTH, **BODY},
    summary="Delete dead letters (the filters of mailspool dlq purge)",
    dependencies=JSON_BODY,
)
async def purge_dead(svc: Svc, flt: RetryFilter) -> Any:
    try:
        found = dead_filter(flt.campaign, flt.reason, flt.since, flt.ids)
    except ValueError as exc:
        return invalid([error(None, "since", str(exc))])
    n = await svc.q.purge_dead(found)
    svc.log.info("dead letters purged", count=n, campaign=flt.campaign, reason=found.reason)
    return PurgeResult(purge=n)
