"""The web dashboard at ``/ui/`` (docs/dashboard.md): campaigns, dead letters, the
suppression list, relays and providers, and a message lookup, live.

Modules: ``pages`` (the HTML shells, sign-in and sign-out), ``data`` (the JSON the
pages poll), ``digest`` (what the job events tell beyond the stored counts),
``holdback`` (why a campaign is not going faster), ``headers`` (CSP and the other
headers of every dashboard response); the sessions and their CSRF tokens are
``mailspool.api.sessions``, taken by the API's own authentication too. ``templates/``
and ``static/`` hold the pages, their scripts and their style: nothing is loaded from
another site.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from mailspool.api.dashboard.data import data
from mailspool.api.dashboard.headers import DashboardHeaders
from mailspool.api.dashboard.pages import STATIC, pages
from mailspool.api.ratelimit import ClientLimits
from mailspool.api.sessions import Sessions

__all__ = ["install"]

#: sign-in attempts per client address: 10 at once, then one every 3 s
LOGIN_RATE = 1 / 3
LOGIN_BURST = 10


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` (its sessions are the app's: ``app.state``)."""
    app.state.sessions = Sessions()
    app.state.login_limits = ClientLimits(rate=LOGIN_RATE, burst=LOGIN_BURST)
    app.include_router(pages)
    app.include_router(data)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_middleware(DashboardHeaders)
