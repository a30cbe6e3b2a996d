"""The FastAPI app and ``mailspool serve``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailspool import __version__
from mailspool.api.attachments import MULTIPART
from mailspool.api.auth import Tokens
from mailspool.api.bodies import BatchIn, MessageIn, MultipartIn
from mailspool.api.campaigns import campaigns
from mailspool.api.dashboard import install as install_dashboard
from mailspool.api.dead_letters import dead_letters
from mailspool.api.events import events
from mailspool.api.intake import NOT_JSON, error
from mailspool.api.middleware import AccessLog, BodyLimit
from mailspool.api.ratelimit import ClientLimits
from mailspool.api.routes import invalid, not_utf8, ops, v1
from mailspool.api.service import Service
from mailspool.api.suppressions import suppressions
from mailspool.api.unsubscribe import u
from mailspool.config import Settings
from mailspool.errors import QueueError
from mailspool.message.unsubscribe import ENV_SECRET, ENV_SECRET_FILE, Secrets
from mailspool.observe.logs import get_logger
from mailspool.observe.metrics import Metrics
from mailspool.queue import Queue
from mailspool.urls import is_loopback


def create_app(
    settings: Settings,
    tokens: Tokens,
    *,
    queue: Queue | None = None,
    workers: int | None = None,
    metrics: Metrics | None = None,
    unsubscribe: Secrets | None = None,
    client_limits: ClientLimits | None = None,
) -> FastAPI:
    """The ASGI app. ``queue``: an open queue to use (otherwise one is opened from the
    settings at start-up and closed at shutdown); ``workers``: worker loops to run in this
    process (default ``settings.workers``); ``unsubscribe``: the secrets of one-click
    unsubscribe tokens (None: ``/u`` answers 404); ``client_limits``: the rate limit of the
    routes without a token (default: ratelimit.py's)."""
    svc = Service(settings, queue, workers, metrics, unsubscribe)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="mailspool",
        version=__version__,
        description="Durable email dispatch over HTTP. See docs/api.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = svc
    app.state.tokens = tokens
    app.state.client_limits = client_limits or ClientLimits()
    app.include_router(v1)
    app.include_router(dead_letters)
    app.include_router(campaigns)
    app.include_router(suppressions)
    app.include_router(events)
    app.include_router(u)
    app.include_router(ops)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(QueueError, _queue_unavailable)
    _document_message_body(app)
    install_dashboard(app)  # /ui/: its sessions are taken by /v1's authentication too
    # the last added is the outermost: the access log sees every answer, the 413 too
    # POST /v1/messages takes files besides the rest (api/attachments.py SizeLimits)
    posted = {("POST", "/v1/messages"): svc.attachment_limits.route_body}
    app.add_middleware(BodyLimit, limit=settings.max_body, routes=posted)
    app.add_middleware(AccessLog, metrics=svc.metrics, templates=lambda: _templates(app))
    return app


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":  # as POST /v1/messages says it (api/intake.py)
            errors.append(error(None, "body", NOT_JSON))
            continue
        loc = [str(p) for p in e.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        errors.append(error(None, ".".join(loc) or "body", str(e.get("msg", "invalid"))))
    return invalid(errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer, but a body it could not decode says why, in the words of
    every route: a body that cannot be read is 400, one read but not valid 422."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return not_utf8()
    return await http_exception_handler(request, exc)


async def _queue_unavailable(request: Request, exc: Exception) -> JSONResponse:
    get_logger("mailspool.api").error("queue error", error=str(exc), kind=type(exc).__name__)
    return JSONResponse({"detail": "the queue is unavailable"}, status_code=503)


def _document_message_body(app: FastAPI) -> None:
    """POST /v1/messages reads its own body (to report errors per message): describe it
    in the OpenAPI document as one message or a batch, in JSON or with files in a form."""
    refs = "#/components/schemas/{model}"
    schema = TypeAdapter(MessageIn | BatchIn).json_schema(by_alias=True, ref_template=refs)
    form = MultipartIn.model_json_schema(by_alias=True, ref_template=refs)
    defs = {**schema.pop("$defs", {}), **form.pop("$defs", {})}
    # a file part is bytes in the form, not base64 (OpenAPI 3.1: a string of that type)
    form["properties"]["attachment"]["items"] = {
        "type": "string",
        "contentMediaType": "application/octet-stream",
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
            content = doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]
            content["application/json"]["schema"] = schema
            content[MULTIPART] = {
                "schema": form,
                "encoding": {"message": {"contentType": "application/json"}},
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def unsubscribe_secrets(settings: Settings) -> Secrets | None:
    """The secrets that check /u tokens: needed with --unsubscribe-url (ConfigError when
    missing), read whenever one is set (a server may only answer the links that ``send``
    put in messages); None otherwise."""
    if settings.unsubscribe_url or os.environ.get(ENV_SECRET) or os.environ.get(ENV_SECRET_FILE):
        return Secrets.from_environment()
    return None


async def serve(settings: Settings) -> bool:
    """``mailspool serve``: run until SIGINT/SIGTERM, then stop the workers gracefully.
    False when the server could not start (the address is taken, a startup step failed:
    uvicorn logged why); the command line makes that its usage exit code."""
    import uvicorn

    tokens = Tokens.from_environment()
    unsubscribe = unsubscribe_secrets(settings)
    log = get_logger("mailspool.api")
    if not is_loopback(settings.host):
        log.warning(
            "listening beyond this machine: put TLS in front of it (a reverse proxy)",
            host=settings.host,
        )
    config = uvicorn.Config(
        create_app(settings, tokens, unsubscribe=unsubscribe),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # the client address (the /u rate limit's) is X-Forwarded-For's only from the
        # proxies in FORWARDED_ALLOW_IPS, by default 127.0.0.1 and ::1: said here so that
        # another default of uvicorn's cannot change it unnoticed
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1",
        lifespan="on",
        timeout_graceful_shutdown=int(settings.lease),
    )
    server = _graceful_server(config)
    announce = asyncio.create_task(_announce(server, log))
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind or start up
        return False
    finally:
        announce.cancel()
    return bool(server.started)


def _templates(app: FastAPI) -> list[str]:
    """Every path template the app serves, for labelling requests routing never saw."""
    paths = (getattr(r, "path", None) for r in app.routes)
    found = [p for p in paths if isinstance(p, str)]
    found += [str(p) for p in app.openapi().get("paths", {})]
    return list(dict.fromkeys(found))


def _graceful_server(config: Any) -> Any:
    """uvicorn's server, except that after a graceful stop on SIGTERM or SIGINT it does
    not raise the signal again (uvicorn does, and the process then exits 143): a graceful
    stop exits 0, as ``mailspool worker``'s does."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with contextlib.ExitStack() as undo:
                if threading.current_thread() is threading.main_thread():
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        undo.callback(signal.signal, sig, signal.signal(sig, self.handle_exit))
                yield

    return Server(config)


async def _announce(server: Any, log: Any) -> None:
    """Log the address actually bound (``--port 0`` picks a free one)."""
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    for s in server.servers:
        for sock in s.sockets:
            host, port = sock.getsockname()[:2]
            log.info("api listening", url=f"http://{host}:{port}", host=host, port=port)
