"""The headers of every dashboard response (``/ui``): a Content-Security-Policy that
allows this server's own scripts, styles and requests and nothing else (no inline
script, no frame, no other site), no framing, no MIME sniffing, no Referer, and no
caching of anything but the static files (a page or its JSON holds data)."""

from __future__ import annotations

from mailspool.api.middleware import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
COMMON = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
#: pages and JSON: never stored; static files: stored, but checked again before use
NO_STORE = (b"cache-control", b"no-store")
REVALIDATE = (b"cache-control", b"no-cache")


class DashboardHeaders:
    """Adds the headers above to the responses under ``prefix``."""

    def __init__(self, app: ASGIApp, prefix: str = "/ui") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        cache = REVALIDATE if path.startswith(self.prefix + "/static/") else NO_STORE

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                ]
                message["headers"] = headers + COMMON + [cache]
            await send(message)

        await self.app(scope, receive, with_headers)
