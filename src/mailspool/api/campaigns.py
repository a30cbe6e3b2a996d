"""Campaign control over HTTP: ``POST /v1/campaigns/{campaign}/pause``, ``resume`` and
``cancel``, with the bearer token, as ``mailspool campaign`` on the command line.

Each is idempotent (pausing a paused campaign answers 200 as the first time did) and
shared by every worker on the queue: a paused campaign's jobs are claimed by none until
it is resumed (messages in flight finish); a cancel ends its queued and deferred jobs as
``cancelled``, and a worker that meets one of its jobs later records it so instead of
sending it. A campaign with no job is a 404; pausing or resuming a cancelled one, a 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from mailspool.api.auth import authorized
from mailspool.api.bodies import CAMPAIGN_PATTERN, CampaignChanged, ErrorBody
from mailspool.api.routes import AUTH, NOT_FOUND, Svc
from mailspool.models import CampaignState

campaigns = APIRouter(prefix="/v1/campaigns", dependencies=[Depends(authorized)])

#: the rule of --campaign: a name no command could give is a 422 naming it
Campaign = Annotated[str, PathParam(pattern=CAMPAIGN_PATTERN)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    **NOT_FOUND,
    409: {"model": ErrorBody, "description": "the campaign is cancelled"},
}


async def _change(svc: Svc, campaign: str, state: CampaignState) -> CampaignChanged:
    if (await svc.q.stats(campaign)).total == 0:
        raise HTTPException(404, "no such campaign")
    change = await svc.q.set_campaign_state(campaign, state)
    if change.state is not state:
        raise HTTPException(409, "the campaign is cancelled: it cannot be paused or resumed")
    svc.log.info(
        "campaign state set", campaign=campaign, state=state.value, cancelled=change.cancelled
    )
    return CampaignChanged(campaign=campaign, state=change.state, cancelled=change.cancelled)


@campaigns.post(
    "/{campaign}/pause",
    response_model=CampaignChanged,
    responses=RESPONSES,
    summary="Pause a campaign: no worker claims its jobs until it is resumed",
)
async def pause(svc: Svc, campaign: Campaign) -> Any:
    return await _change(svc, campaign, CampaignState.PAUSED)


@campaigns.post(
    "/{campaign}/resume",
    response_model=CampaignChanged,
    responses=RESPONSES,
    summary="Resume a paused campaign",
)
async def resume(svc: Svc, campaign: Campaign) -> Any:
    return await _change(svc, campaign, CampaignState.ACTIVE)


@campaigns.post(
    "/{campaign}/cancel",
    response_model=CampaignChanged,
    responses=RESPONSES,
    summary="Cancel a campaign: its queued and deferred jobs end cancelled, never sent",
)
async def cancel(svc: Svc, campaign: Campaign) -> Any:
    return await _change(svc, campaign, CampaignState.CANCELLED)
