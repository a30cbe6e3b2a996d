"""ASGI middleware: the request body limit (413) and the access log with its metric."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from starlette.routing import compile_path

from mailspool.observe.logs import get_logger
from mailspool.observe.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over ``limit`` bytes, or over the limit ``routes`` gives its method
    and path (POST /v1/messages, which takes files): by Content-Length before a byte is
    read, and by counting while reading a chunked body."""

    def __init__(
        self, app: ASGIApp, limit: int, routes: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.default = limit
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get((scope.get("method", ""), scope.get("path", "")), self.default)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _too_large(send, limit)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AccessLog:
    """One log event and one counter per request, whatever answered it (the body limit's
    413 too: this is the outermost layer). The route label is the route's template
    (``/v1/messages/{job_id}``), never the raw path: the one routing matched, else the
    first of ``templates()`` the path matches (a request answered before routing, a
    route that does not record itself), else ``unmatched``; nothing from the headers or
    the query string is logged."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, templates: Callable[[], Sequence[str]] = list
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None
        self.log = get_logger("mailspool.api")

    def _route(self, scope: Scope) -> str:
        found = getattr(scope.get("route"), "path", None)
        if found:
            return str(found)
        if self._compiled is None:  # the app's path templates, once it is up
            self._compiled = [(compile_path(t)[0], t) for t in self.templates()]
        path = str(scope.get("path", ""))
        return next((t for regex, t in self._compiled if regex.match(path)), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = self._route(scope)
            method = str(scope.get("method", ""))
            self.metrics.api_request(method, route, status)
            level = "warning" if status >= 500 else "info" if status >= 400 else "debug"
            getattr(self.log, level)(
                "http request",
                method=method,
                route=route,
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
