"""Job events over HTTP for pollers: ``GET /v1/events?after=CURSOR``, with the bearer
token. The same events, in the same JSON, as the webhooks post (webhooks/payload.py),
in commit order: ``next`` is the ``after`` of the next page (the cursor of the last
event read, also when a filter skipped it), so a poller that stores it and asks again
sees every event once. Events are kept for ``--event-retention`` (7 days by default)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mailspool.api.auth import authorized
from mailspool.api.bodies import FieldError
from mailspool.api.routes import AUTH, Svc, invalid
from mailspool.queue.events import MAX_PAGE, EventType
from mailspool.webhooks.payload import event_dict

#: the cursors of every backend: a decimal sequence number, or a Redis stream id
CURSOR_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
DEFAULT_LIMIT = 100


class EventOut(BaseModel):
    id: str = Field(description="the event's id: the webhook-id of its webhook requests")
    type: EventType
    timestamp: str = Field(description="when it happened, RFC 3339 UTC")
    data: dict[str, Any] = Field(description="job_id, campaign, recipient(s) and details")


class EventPage(BaseModel):
    events: list[EventOut]
    next: str | None = Field(description="give as after= for the next page (null: none yet)")


events = APIRouter(prefix="/v1/events", dependencies=[Depends(authorized)])


@events.get(
    "",
    response_model=EventPage,
    responses={**AUTH},
    summary="Job events after a cursor, oldest first (for pollers; webhooks post the same)",
)
async def list_events(
    svc: Svc,
    after: Annotated[
        str | None,
        Query(max_length=45, description="the next of the page before; absent: the oldest kept"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_LIMIT,
    type_: Annotated[
        list[EventType] | None, Query(alias="type", description="only these types (repeatable)")
    ] = None,
    campaign: Annotated[str | None, Query(max_length=200, description="only this campaign")] = None,
) -> Any:
    if after is not None and not re.fullmatch(CURSOR_PATTERN, after):
        return invalid([FieldError(index=None, field="after", reason="not a value of next")])
    got = await svc.q.events.read(after, limit)
    wanted = set(type_) if type_ else None
    out = [
        EventOut(id=e.id, **event_dict(e))
        for e in got
        if (wanted is None or e.type in wanted) and (campaign is None or e.campaign == campaign)
    ]
    return EventPage(events=out, next=got[-1].cursor if got else after)
