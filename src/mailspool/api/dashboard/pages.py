"""The dashboard's pages, sign-in and sign-out. Each page is a shell (templates/): its
figures come from its script (static/), which polls JSON; the shell carries the
session's CSRF token for the script to send back.

::

    GET  /ui/                       campaigns
    GET  /ui/campaigns/{name}       one campaign
    GET  /ui/dead-letters           dead letters
    GET  /ui/suppressions           the suppression list, relays and providers
    GET  /ui/messages               a message by id or recipient
    GET  /ui/login   POST /ui/login   POST /ui/logout
    GET  /ui/static/...             scripts, styles (no data: cached, revalidated)

A page asked for without a signed-in session redirects to the login form; the form has
a session of its own (not signed in) so that its post carries a CSRF token too.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mailspool import __version__
from mailspool.api.auth import Tokens
from mailspool.api.ratelimit import ClientLimits
from mailspool.api.sessions import (
    COOKIE,
    CSRF_FIELD,
    Session,
    Sessions,
    clear_cookie,
    set_cookie,
)

HERE = Path(str(resources.files("mailspool.api.dashboard")))
STATIC = HERE / "static"
#: a login form's body is a token and a CSRF token: nothing larger is read
MAX_FORM_BYTES = 4096
#: the pages, by path: (template, title, script)
PAGES = {
    "": ("campaigns.html", "Campaigns", "campaigns.js"),
    "dead-letters": ("dead_letters.html", "Dead letters", "dead_letters.js"),
    "suppressions": ("suppressions.html", "Suppressions and relays", "suppressions.js"),
    "messages": ("messages.html", "Message lookup", "messages.js"),
}

pages = APIRouter(prefix="/ui", include_in_schema=False)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = environment().get_template(name).render(version=__version__, **values)
    return HTMLResponse(html, status_code=status)


def sessions_of(request: Request) -> Sessions:
    found: Sessions = request.app.state.sessions
    return found


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def page(request: Request, template: str, title: str, script: str, **values: Any) -> Response:
    session = sessions_of(request).of(request)
    if session is None or not session.signed_in:
        return to_login(request)
    return render(template, title=title, script=script, csrf=session.csrf, **values)


@pages.get("")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


def _page_route(template: str, title: str, script: str) -> Any:
    async def show(request: Request) -> Response:
        return page(request, template, title, script)

    return show


for _path, (_template, _title, _script) in PAGES.items():
    pages.add_api_route(f"/{_path}", _page_route(_template, _title, _script), methods=["GET"])


@pages.get("/campaigns/{name}")
async def campaign_page(request: Request, name: str) -> Response:
    return page(request, "campaign.html", f"Campaign {name}", "campaign.js", campaign=name)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if value and value.startswith("/ui/") and not value.startswith("/ui//") and "\\" not in value:
        return value
    return "/ui/"


def login_form(request: Request, session_id: str, session: Session, **values: Any) -> Response:
    status = values.pop("status", 200)
    response = render(
        "login.html",
        status,
        title="Sign in",
        csrf=session.csrf,
        next=safe_next(request.query_params.get("next") or values.pop("next", None)),
        error=values.pop("error", ""),
    )
    set_cookie(response, request, session_id)
    return response


@pages.get("/login")
async def login_page(request: Request) -> Response:
    found = sessions_of(request)
    session = found.of(request)
    if session is not None and session.signed_in:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if session is None:
        session_id, session = found.start(signed_in=False)
    else:
        session_id = request.cookies[COOKIE]
    return login_form(request, session_id, session)


async def read_form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"request body over {MAX_FORM_BYTES} bytes")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def forbidden() -> Response:
    return render(
        "message.html",
        403,
        title="Refused",
        text="The form had expired or came from elsewhere. Open the page again and retry.",
    )


async def login_limited(request: Request) -> None:
    """429 for a client that tried too many tokens lately."""
    limits: ClientLimits = request.app.state.login_limits
    wait = limits.take(request.client.host if request.client else None)
    if wait:
        raise HTTPException(
            429,
            "too many sign-in attempts: try again later",
            headers={"Retry-After": ClientLimits.retry_after(wait)},
        )


@pages.post("/login", dependencies=[Depends(login_limited)])
async def login(request: Request) -> Response:
    form = await read_form(request)
    found = sessions_of(request)
    session_id = request.cookies.get(COOKIE)
    session = found.get(session_id)
    if session is None or not session.csrf_ok(form.get(CSRF_FIELD)):
        return forbidden()
    tokens: Tokens = request.app.state.tokens
    if not tokens.check(form.get("token", "")):
        return login_form(
            request,
            str(session_id),
            session,
            status=401,
            error="That token is not one this server accepts.",
            next=form.get("next"),
        )
    found.end(session_id)  # a new id once signed in: a planted cookie is worth nothing
    new_id, _ = found.start(signed_in=True)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(response, request, new_id)
    return response


@pages.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    found = sessions_of(request)
    session = found.of(request)
    if session is None or not session.csrf_ok(form.get(CSRF_FIELD)):
        return forbidden()
    found.end(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    clear_cookie(response, request)
    return response
