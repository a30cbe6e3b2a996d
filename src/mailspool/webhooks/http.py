"""A small HTTP/1.1 client for webhook requests: POST with keep-alive connections to
one endpoint, over TCP or TLS (certificates verified).

Why not a general client library: a webhook is one small POST per job event, and an
event is written for every message delivered; measured here, httpx spent about 1.2 ms
of CPU on each such request and a plain asyncio stream about 60 µs, which decides
whether sending events costs a tenth of the delivery rate or more than all of it. This
client does only what webhook delivery needs: no redirects (a 3xx is a failure, as the
Standard Webhooks guidance says), no cookies, no proxies, no compression; a response's
body is read and discarded (up to :data:`MAX_BODY` bytes, else the connection is closed
instead).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HttpClient", "HttpError", "parse_target"]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
USER_AGENT = "mailspool-webhooks"
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpError(Exception):
    """A request that got no usable response: the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    authorization: str | None


def parse_target(url: str) -> Target:
    """The parts of an ``http://`` or ``https://`` URL; ValueError otherwise. A user and
    password in the URL become Basic authorization."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook URL is http:// or https:// with a host")
    if any(c in url for c in "\r\n\t ") or not url.isprintable():
        raise ValueError("a webhook URL holds no blanks or control characters")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("the webhook URL's port is not a number from 0 to 65535") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    auth = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return Target(parts.scheme, parts.hostname, port, path, auth)


class HttpClient:
    """Keep-alive connections to the host of ``url``; ``post`` may run concurrently (one
    request per connection at a time, at most ``connections`` connections)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        connections: int = 8,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target = parse_target(url)
        self.timeout = timeout
        self.connections = connections
        self._tls = tls if tls is not None else ssl.create_default_context()
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(connections)
        host = self.target.host
        if ":" in host:
            host = f"[{host}]"
        default = 443 if self.target.scheme == "https" else 80
        hostport = host if self.target.port == default else f"{host}:{self.target.port}"
        lines = [f"POST {self.target.path} HTTP/1.1", f"Host: {hostport}"]
        lines += [f"User-Agent: {USER_AGENT}", "Content-Type: application/json"]
        if self.target.authorization:
            lines.append(f"Authorization: {self.target.authorization}")
        self._head = "\r\n".join(lines) + "\r\n"

    def request(self, body: bytes, headers: dict[str, str]) -> bytes:
        """The bytes of a POST of ``body`` with ``headers`` (besides the fixed ones)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return f"{self._head}{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body``; the response's status code. HttpError when there is none."""
        async with self._slots:
            return await self._timed(self.request(body, headers))

    async def post_many(self, requests: Sequence[bytes]) -> list[int | HttpError]:
        """Send each request (made by :meth:`request`), as many at once as there are
        connections; each one's status code or HttpError, in order. One task per
        connection, not per request: this is the path every event takes."""
        results: list[int | HttpError] = [HttpError("not sent")] * len(requests)
        todo = iter(enumerate(requests))

        async def lane() -> None:
            async with self._slots:
                for i, request in todo:
                    try:
                        results[i] = await self._timed(request)
                    except HttpError as exc:
                        results[i] = exc

        lanes = min(self.connections, len(requests))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return results

    async def _timed(self, request: bytes) -> int:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(request)
        except TimeoutError:
            raise HttpError(f"no response within {self.timeout:g}s") from None

    async def _exchange(self, request: bytes) -> int:
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._on(conn, request)
            except _Stale:
                continue  # the server closed an idle connection: try a fresh one
        try:
            conn = await asyncio.open_connection(
                self.target.host,
                self.target.port,
                ssl=self._tls if self.target.scheme == "https" else None,
            )
        except ssl.SSLError as exc:
            raise HttpError(f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise HttpError(f"cannot connect: {exc.strerror or exc}") from None
        try:
            return await self._on(conn, request)
        except _Stale:
            raise HttpError("the server closed the connection without a response") from None

    async def _on(self, conn: _Conn, request: bytes) -> int:
        reader, writer = conn
        keep = False
        try:
            writer.write(request)
            try:
                await writer.drain()
                status, keep = await _response(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise HttpError("the response was cut short") from None
                raise _Stale from None
            except ValueError:
                raise HttpError("a malformed response") from None
            return status
        finally:
            if keep:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _Stale(Exception):
    """No byte of a response came back (an idle connection the server had closed)."""


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The final status code and whether the connection can be used again."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError("the response's header is too long") from None
        if len(head) > MAX_HEAD:
            raise HttpError("the response's header is too long")
        if head.startswith(b"HTTP/1.1 204 ") and b"\r\nconnection: close" not in head.lower():
            return 204, True  # the common answer: no body, the connection kept
        version, status, fields = _head(head)
        if 100 <= status < 200:
            continue  # 100 Continue and other interim responses
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        return status, await _skip_body(reader, status, fields) and keep


def _head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """The version, status code and header fields (names lower-cased) of a response."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP response: {lines[0][:80]!r}")
    fields = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return version, int(code), fields


async def _skip_body(reader: asyncio.StreamReader, status: int, fields: dict[str, str]) -> bool:
    """Read the body past; whether the connection can carry another request after it."""
    if "chunked" in fields.get("transfer-encoding", "").lower():
        await _chunked(reader)
        return True
    if "content-length" in fields:
        n = int(fields["content-length"]) if fields["content-length"].isdigit() else -1
        if not 0 <= n <= MAX_BODY:
            return False  # not worth reading: close the connection instead
        await reader.readexactly(n)
        return True
    return status in (204, 304)  # else the body runs to the end of the connection


async def _chunked(reader: asyncio.StreamReader) -> None:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        total += size
        if total > MAX_BODY:
            raise HttpError("the response's body is too long")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return
        await reader.readexactly(size + 2)
