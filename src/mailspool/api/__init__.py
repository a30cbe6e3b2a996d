"""The HTTP API, ``mailspool serve`` (docs/api.md): FastAPI on uvicorn.

::

    POST /v1/messages             one message, or {"messages": [...]} (up to 1,000) -> 202
    GET  /v1/messages/{id}        state, attempts, last reply, timestamps
    GET  /v1/campaigns/{id}       its state, counts by state, current rate, ETA
    POST /v1/campaigns/{id}/pause|resume|cancel   campaign control (``mailspool campaign``)
    GET  /v1/dead-letters         the filters of ``mailspool dlq list``
    POST /v1/dead-letters/retry|purge   the filters of ``mailspool dlq retry|purge``
    PUT  /v1/templates/{name}     register a template (rendered in a Jinja2 sandbox)
    GET  /v1/templates/{name}
    GET|POST|DELETE /v1/suppressions  the suppression list
    POST /u/{token}               one-click unsubscribe (RFC 8058); GET: a page with a button
    GET  /healthz  /readyz  /metrics  /openapi.json
    /ui/                          the web dashboard (dashboard/, docs/dashboard.md)

A posted message is validated and rendered here by the same ``Renderer`` and ``Producer``
as a CSV row, so a 202 means the job is durable in the queue; a message that fails is
reported with its index, field and reason (422), and nothing of that request is queued.

Everything under ``/v1`` and ``/metrics`` needs ``Authorization: Bearer <token>`` with a
token from ``MAILSPOOL_API_TOKENS`` (comma-separated) or ``MAILSPOOL_API_TOKENS_FILE``.
``/u/{token}`` needs none (mail providers post to it blind): its own signed token says
what it may do, and it is rate-limited per client address. The dashboard's session
cookie (``sessions``, signed in with such a token) is taken in the token's place, with
its CSRF token on every request that changes something.

Modules: ``bodies`` (request and response models), ``auth`` (tokens), ``templates``
(named templates in the blob store), ``intake`` (messages -> jobs -> queue), ``service``
(what the routes share, in-process workers), ``middleware`` (body limit, access log),
``routes``, ``campaigns`` (campaign control), ``dead_letters`` (/v1/dead-letters),
``suppressions`` (/v1/suppressions), ``unsubscribe`` (/u) and ``ratelimit`` (its limit
per client), ``sessions`` (the dashboard's sessions and CSRF tokens), ``dashboard``
(/ui), ``app`` (the FastAPI app and ``serve``).
"""

from __future__ import annotations

from mailspool.errors import ConfigError

try:
    import fastapi  # noqa: F401 - fail early and clearly without the extra
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "mailspool serve needs the 'api' extra: pip install 'mailspool[api]'"
    ) from exc

from mailspool.api.app import create_app, serve
from mailspool.api.auth import Tokens

__all__ = ["Tokens", "create_app", "serve"]
