"""The routes. Each takes the app's :class:`Service` as a dependency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response

from mailspool.api.attachments import MULTIPART, TooLarge, media_type, read_body
from mailspool.api.auth import authorized
from mailspool.api.bodies import (
    IDEMPOTENCY_PATTERN,
    NAME_PATTERN,
    Accepted,
    AcceptedBatch,
    CampaignStatus,
    ErrorBody,
    FieldError,
    Health,
    MessageStatus,
    ProviderOut,
    RelayOut,
    ReturnCountsOut,
    ReturnOut,
    TemplateIn,
    TemplateOut,
    TooLargeBody,
    ValidationFailed,
)
from mailspool.api.intake import Invalid, NotUTF8, error
from mailspool.api.service import Service
from mailspool.api.templates import StoredTemplate
from mailspool.delivery.published import PROVIDERS_KEY, published
from mailspool.errors import TemplateError
from mailspool.models import CampaignState, Job, State

INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationFailed, "description": "field-level errors (per message)"}
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or invalid bearer token"},
    413: {"model": ErrorBody, "description": "request body too large"},
    503: {"model": ErrorBody, "description": "the queue is unavailable"},
    **INVALID,
}
#: a body that cannot be read is 400; one read but not a valid request, 422 (INVALID)
NOT_UTF8 = "the body is not UTF-8"
BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": NOT_UTF8},
    415: {"model": ErrorBody, "description": "the body is not JSON (Content-Type)"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
POSTED: dict[int | str, dict[str, Any]] = {
    **AUTH,
    413: {
        "model": TooLargeBody,
        "description": "request body too large, or an attachment over a size limit (named)",
    },
    415: {"model": ErrorBody, "description": "the body is neither JSON nor multipart/form-data"},
}
#: bodies at least this large are read (parsed, decoded, hashed) on a thread
THREAD_READ_AT = 1024 * 1024


async def service(request: Request) -> Service:
    """The app's service (async: a sync dependency would cost a thread hop per request)."""
    svc: Service = request.app.state.service
    return svc


Svc = Annotated[Service, Depends(service)]


async def json_body(request: Request) -> None:
    """415 unless the body is declared JSON: a form or text/plain body must not be read
    as JSON (a browser may post those across origins without asking)."""
    media = media_type(request.headers.get("content-type", ""))
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise HTTPException(415, "the body must be JSON (Content-Type: application/json)")


async def json_or_form(request: Request) -> None:
    """415 unless the body is JSON or multipart/form-data (POST /v1/messages with files):
    a form is safe to take here, as a browser posting one across origins cannot send
    the bearer token every /v1 route needs."""
    if media_type(request.headers.get("content-type", "")) != MULTIPART:
        await json_body(request)


JSON_BODY = [Depends(json_body)]
v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])
ops = APIRouter()


def not_utf8() -> JSONResponse:
    return JSONResponse({"detail": NOT_UTF8}, status_code=400)


def invalid(errors: list[FieldError]) -> JSONResponse:
    body = ValidationFailed(detail="validation failed", errors=errors)
    return JSONResponse(body.model_dump(), status_code=422)


def iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@v1.post(
    "/messages",
    status_code=202,
    response_model=Accepted | AcceptedBatch,
    responses={**POSTED, 400: BODY[400]},
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {}, MULTIPART: {}}}
    },
    summary="Queue one message or a batch (with attachments: base64 in JSON, or multipart)",
    dependencies=[Depends(json_or_form)],
)
async def post_messages(
    request: Request,
    svc: Svc,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_PATTERN,
            description="the same key (within a campaign) returns the same job",
        ),
    ] = None,
) -> Any:
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    try:
        if len(raw) >= THREAD_READ_AT:  # base64 and hashes of megabytes: off the event loop
            received = await asyncio.to_thread(read_body, ctype, raw, svc.attachment_limits)
        else:
            received = read_body(ctype, raw, svc.attachment_limits)
        jobs = await svc.accept(received, idempotency_key)
    except NotUTF8:
        return not_utf8()
    except Invalid as exc:
        return invalid(exc.errors)
    except TooLarge as exc:
        body = TooLargeBody(detail=exc.detail, errors=exc.errors)
        return JSONResponse(body.model_dump(), status_code=413)
    content = {"ids": [j.id for j in jobs]} if received.batch else {"id": jobs[0].id}
    return JSONResponse(content, status_code=202)


@v1.get(
    "/messages/{job_id}",
    response_model=MessageStatus,
    responses={**AUTH, **NOT_FOUND},
    summary="A message's state",
)
async def get_message(svc: Svc, job_id: Annotated[str, PathParam(max_length=200)]) -> Any:
    job = await svc.q.get(job_id)
    if job is None:
        raise HTTPException(404, "no such message")
    return await message_status(svc, job)


async def message_status(svc: Service, job: Job) -> MessageStatus:
    """A job as GET /v1/messages/{id} shows it (the dashboard's lookup too)."""
    event = await svc.q.returns.latest(job.id)
    last_return = None
    if event is not None:
        last_return = ReturnOut(
            kind=event.kind,
            recipient=event.address,
            status=event.status,
            permanent=event.permanent,
            diagnostic=event.diagnostic,
            received_at=iso(event.at) or "",
        )
    return MessageStatus(
        id=job.id,
        campaign=job.campaign,
        state=job.state,
        attempts=job.attempts,
        last_reply=job.last_reply,
        dead_reason=job.dead_reason or None,
        message_id=job.message_id,
        created_at=iso(job.created_at) or "",
        updated_at=iso(job.updated_at) or "",
        next_attempt_at=iso(job.not_before) if job.state is State.DEFERRED else None,
        last_return=last_return,
    )


@v1.get(
    "/campaigns/{campaign}",
    response_model=CampaignStatus,
    responses={**AUTH, **NOT_FOUND},
    summary="A campaign's counts by state, current rate and ETA",
)
async def get_campaign(svc: Svc, campaign: Annotated[str, PathParam(max_length=200)]) -> Any:
    st = await svc.q.stats(campaign)
    if st.total == 0:
        raise HTTPException(404, "no such campaign")
    returned = await svc.q.returns.counts(campaign)
    rate = svc.rates.rate(campaign, st.get(State.SENT) + st.get(State.DEAD))
    eta: float | None = None
    if st.pending == 0:
        eta = 0.0
    elif rate:
        eta = round(st.pending / rate, 1)
    states = await svc.q.campaign_states([campaign])
    return CampaignStatus(
        campaign=campaign,
        state=states.get(campaign, CampaignState.ACTIVE),
        counts={s.value: st.get(s) for s in State},
        total=st.total,
        pending=st.pending,
        ambiguous=st.ambiguous,
        rate_per_s=None if rate is None else round(rate, 2),
        eta_s=eta,
        next_due_at=iso(st.next_due) if st.pending else None,
        returns=ReturnCountsOut(
            bounced=returned.bounced,
            soft_bounced=returned.soft_bounced,
            complained=returned.complained,
        ),
        relays=[RelayOut(**(r | {"at": iso(r["at"])})) for r in await published(svc.q)],
        providers=[
            ProviderOut(**(p | {"at": iso(p["at"])})) for p in await published(svc.q, PROVIDERS_KEY)
        ],
    )


def template_out(stored: StoredTemplate) -> TemplateOut:
    return TemplateOut(
        name=stored.name,
        version=stored.version,
        text=stored.text,
        html=stored.html,
        created_at=iso(stored.created_at) or "",
    )


@v1.put(
    "/templates/{name}",
    response_model=TemplateOut,
    responses={**AUTH, **BODY, 201: {"model": TemplateOut, "description": "a new version"}},
    summary="Register a template (a new version when it differs from the latest)",
    dependencies=JSON_BODY,
)
async def put_template(
    svc: Svc, name: Annotated[str, PathParam(pattern=NAME_PATTERN)], body: TemplateIn
) -> Any:
    try:
        stored, created = await svc.templates.put(name, body.text, body.html)
    except TemplateError as exc:
        return invalid([error(None, "text", str(exc))])
    if created:
        svc.log.info("template stored", template=name, version=stored.version)
    return JSONResponse(template_out(stored).model_dump(), status_code=201 if created else 200)


@v1.get(
    "/templates/{name}",
    response_model=TemplateOut,
    responses={**AUTH, **NOT_FOUND},
    summary="The latest version of a template",
)
async def get_template(svc: Svc, name: Annotated[str, PathParam(pattern=NAME_PATTERN)]) -> Any:
    stored = await svc.templates.get(name)
    if stored is None:
        raise HTTPException(404, "no such template")
    return template_out(stored)


@ops.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Any:
    return Health(status="ok")


@ops.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="The queue and job store answer, and the in-process workers run",
)
async def readyz(svc: Svc) -> Any:
    status = await svc.readiness()
    if status != "ready":
        return JSONResponse({"status": status}, status_code=503)
    return Health(status=status)


@ops.get(
    "/metrics",
    dependencies=[Depends(authorized)],
    response_class=Response,
    responses={**AUTH, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics(svc: Svc) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    await svc.refresh_depth()
    return Response(generate_latest(svc.scrape), media_type=CONTENT_TYPE_LATEST)
