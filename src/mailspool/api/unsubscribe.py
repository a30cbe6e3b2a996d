"""One-click unsubscribe (RFC 8058): ``POST /u/{token}`` and ``GET /u/{token}``.

The only routes without a bearer token: mail providers post to the link in a message's
List-Unsubscribe header blind, with no cookie and no login, and a recipient opens it in
a browser. The token alone says who unsubscribes from which list; it is signed
(message/unsubscribe.py: HMAC-SHA256, checked in constant time), so it cannot be forged
or altered to name someone else.

- ``POST`` with the form field ``List-Unsubscribe=One-Click`` (url-encoded, or
  multipart/form-data as RFC 8058 prefers) suppresses the token's address on the token's
  list at once (reason ``unsubscribed``, source ``unsubscribe:CAMPAIGN``) and answers
  200. Posting again changes nothing and answers 200 again.
- ``GET`` answers a small page with a button that posts the same form. It never
  unsubscribes: link scanners and previews fetch every URL of a message.
- A token that is forged, altered or truncated gets 400 and a page that says no more.
- Both are rate-limited per client address (ratelimit.py): 429 with Retry-After.

Every page is self-contained (no script, no external resource), its values escaped, and
served with a Content-Security-Policy that allows nothing else, no Referer (the URL holds
the token) and no caching.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse

from mailspool.api.bodies import ErrorBody
from mailspool.api.ratelimit import ClientLimits
from mailspool.api.routes import Svc
from mailspool.api.service import Service
from mailspool.message.optout import domain_key
from mailspool.message.unsubscribe import ONE_CLICK, BadToken, Unsubscribe, read_token
from mailspool.queue.suppression import Reason, Suppression

#: a one-click body is 26 bytes (a few hundred as multipart): nothing larger is read
MAX_FORM_BYTES = 16 * 1024
FIELD, VALUE = ONE_CLICK.split("=")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_JSON_ERROR = {"content": {"application/json": {"schema": ErrorBody.model_json_schema()}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_HTML, "description": "the link is not valid (nothing said about why)"},
    404: {**_HTML, "description": "one-click unsubscribe is not set up on this server"},
    429: {**_JSON_ERROR, "description": "too many requests from this address (Retry-After)"},
    503: {**_JSON_ERROR, "description": "the queue is unavailable"},
}
FORM = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "properties": {FIELD: {"type": "string", "enum": [VALUE]}},
                    "required": [FIELD],
                }
            }
            for media in ("application/x-www-form-urlencoded", "multipart/form-data")
        },
    }
}
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;"
    "line-height:1.5}button{font-size:1em;padding:.5em 1.2em}"
)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A whole page; ``body`` is HTML already escaped."""
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def invalid_link() -> HTMLResponse:
    return page(
        "Invalid link",
        "<p>This unsubscribe link is not valid. Use the link of the message itself, whole.</p>",
        400,
    )


async def limited(request: Request) -> None:
    """A route dependency: 429 when the client has used up its requests."""
    limits: ClientLimits = request.app.state.client_limits
    wait = limits.take(request.client.host if request.client else None)
    if wait:
        raise HTTPException(
            429,
            "too many requests: try again later",
            headers={"Retry-After": ClientLimits.retry_after(wait)},
        )


Token = Annotated[str, PathParam(description="the token of the message's link")]
u = APIRouter(prefix="/u", dependencies=[Depends(limited)])


def token_of(svc: Service, token: str) -> Unsubscribe | HTMLResponse:
    """What the token names, or the page to answer with: 404 when unsubscribing is not
    set up here, 400 for a token that is not valid."""
    if svc.unsubscribe is None:
        return page(
            "Not available",
            "<p>One-click unsubscribe is not set up on this server.</p>",
            404,
        )
    try:
        return read_token(svc.unsubscribe, token)
    except BadToken:
        return invalid_link()


async def form_body(request: Request) -> bytes | None:
    """The request body, or None when it is over MAX_FORM_BYTES."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return body


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether the form holds ``List-Unsubscribe=One-Click``: url-encoded (any other
    Content-Type is read as that too), or multipart/form-data."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        try:
            form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in form.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = part.get_payload(decode=True)
                if name == FIELD and isinstance(value, bytes) and value.strip() == VALUE.encode():
                    return True
        except (ValueError, TypeError, LookupError):
            return False
        return False
    text = body.decode("latin-1").strip()
    return (FIELD, VALUE) in parse_qsl(text, keep_blank_values=True)


@u.get(
    "/{token}",
    response_class=HTMLResponse,
    responses=RESPONSES,
    summary="The unsubscribe page: a button that posts (a GET never unsubscribes)",
)
async def unsubscribe_page(svc: Svc, token: Token) -> HTMLResponse:
    found = token_of(svc, token)
    if isinstance(found, HTMLResponse):
        return found
    list_name = html.escape(found.list_name)
    return page(
        "Unsubscribe",
        f"<p>Stop sending <strong>{html.escape(found.address)}</strong> the messages"
        f" of the list <strong>{list_name}</strong>?</p>"
        f'<form method="post"><input type="hidden" name="{FIELD}" value="{VALUE}">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@u.post(
    "/{token}",
    response_class=HTMLResponse,
    responses={
        **RESPONSES,
        400: {**_HTML, "description": "the link is not valid, or the body is not the form"},
        413: {**_JSON_ERROR, "description": "request body too large"},
    },
    openapi_extra=FORM,
    summary="One-click unsubscribe (RFC 8058): suppress the link's address on its list",
)
async def unsubscribe(request: Request, svc: Svc, token: Token) -> Any:
    body = await form_body(request)
    if body is None:
        return JSONResponse({"detail": "request body too large"}, status_code=413)
    found = token_of(svc, token)
    if isinstance(found, HTMLResponse):
        return found
    if not is_one_click(request.headers.get("content-type", ""), body):
        return page(
            "Not unsubscribed",
            f"<p>The request did not carry the form field {FIELD}={VALUE}.</p>",
            400,
        )
    entry = Suppression(
        found.address,
        found.list_name,
        Reason.UNSUBSCRIBED,
        f"unsubscribe:{found.campaign}",
        time.time(),
    )
    try:
        await svc.q.suppressions.add([entry])
    except ValueError:  # signed by us, yet not an entry: a token from another version
        return invalid_link()
    svc.log.info(
        "unsubscribed",
        list=found.list_name,
        campaign=found.campaign,
        domain=domain_key(found.address)[1:],
    )
    return page(
        "Unsubscribed",
        f"<p><strong>{html.escape(found.address)}</strong> will get no more messages of"
        f" the list <strong>{html.escape(found.list_name)}</strong>.</p>",
    )
