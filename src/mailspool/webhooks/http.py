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

Requests are pipelined (RFC 9112 section 9.3.2): up to :data:`PIPELINE` go out on a
connection in one write before their responses are read, in order. A POST is not
idempotent, which the RFC asks a client to allow for: webhook delivery is at least once
anyway (a receiver removes duplicates by ``webhook-id``), so what a connection left
unanswered is sent again on another, and a server seen to answer one and drop the rest
is sent one request at a time from then on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HttpClient", "HttpError", "parse_target"]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
USER_AGENT = "mailspool-webhooks"
#: requests written on a connection before reading their responses: one write and one
#: read carry many events (a request a round trip costs most of the CPU per event)
PIPELINE = 16
log = logging.getLogger(__name__)
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
        pipeline: int = PIPELINE,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.target = parse_target(url)
        self.timeout = timeout
        self.connections = connections
        self._tls = tls if tls is not None else ssl.create_default_context()
        #: how many requests go out on a connection before their responses are read
        #: (RFC 9112 section 9.3.2); 1 once the server is seen not to take them
        self.pipeline = max(1, pipeline)
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
        (result,) = await self.post_many([self.request(body, headers)])
        if isinstance(result, HttpError):
            raise result
        return result

    async def post_many(self, requests: Sequence[bytes]) -> list[int | HttpError]:
        """Send each request (made by :meth:`request`), spread over up to
        ``connections`` connections and pipelined up to :attr:`pipeline` deep on each;
        each one's status code or HttpError, in order. One task per connection, not per
        request: this is the path every event takes."""
        n = len(requests)
        results: list[int | HttpError] = [HttpError("not sent")] * n
        lanes = min(self.connections, n)
        size = max(1, min(self.pipeline, -(-n // max(lanes, 1))))
        starts = iter(range(0, n, size))

        async def lane() -> None:
            async with self._slots:
                for at in starts:
                    results[at : at + size] = await self._exchange(requests[at : at + size])

        await asyncio.gather(*(lane() for _ in range(lanes)))
        return results

    async def _exchange(self, requests: Sequence[bytes]) -> list[int | HttpError]:
        """Each request's status or error: on an idle connection, else a new one; what
        a connection left unanswered (it closed) goes again on another."""
        results: list[int | HttpError] = []
        while len(results) < len(requests):
            rest = requests[len(results) :]
            if self.pipeline <= 1:
                rest = rest[:1]
            fresh = not self._idle
            if fresh:
                try:
                    conn = await self._connect()
                except HttpError as exc:
                    return results + [exc] * len(rest)
            else:
                conn = self._idle.pop()
            answered, failure = await self._on(conn, rest)
            results += answered
            if failure is None:
                continue
            if isinstance(failure, HttpError):
                results.append(failure)  # this one failed with the connection
            elif fresh and not answered:
                results.append(HttpError("the server closed the connection without a response"))
            elif answered and len(rest) > len(answered) and failure == "dropped":
                # answered some of a pipelined write, then closed without saying so
                log.info("%s does not take pipelined requests: sending one at a time", self)
                self.pipeline = 1
            # else an idle connection the server had closed: the rest go on another
        return results

    async def _connect(self) -> _Conn:
        try:
            return await asyncio.open_connection(
                self.target.host,
                self.target.port,
                ssl=self._tls if self.target.scheme == "https" else None,
            )
        except ssl.SSLError as exc:
            raise HttpError(f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise HttpError(f"cannot connect: {exc.strerror or exc}") from None

    async def _on(
        self, conn: _Conn, requests: Sequence[bytes]
    ) -> tuple[list[int], HttpError | str | None]:
        """Write ``requests`` in one go and read their responses in order: the statuses
        of those answered, and why the rest were not (None: all were; ``"closed"``:
        the server said it closes; ``"dropped"``: it closed without saying so; an
        HttpError: the response being read failed). A timeout applies to each response."""
        reader, writer = conn
        statuses: list[int] = []
        keep = False
        failure: HttpError | str | None = None
        try:
            async with asyncio.timeout(self.timeout) as window:
                writer.write(b"".join(requests) if len(requests) > 1 else requests[0])
                await writer.drain()
                while len(statuses) < len(requests):
                    status, keep = await _response(reader)
                    statuses.append(status)
                    if not keep:
                        break
                    window.reschedule(asyncio.get_running_loop().time() + self.timeout)
            if len(statuses) < len(requests):
                failure = "closed"
        except TimeoutError:
            failure, keep = HttpError(f"no response within {self.timeout:g}s"), False
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            keep = False
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                failure = HttpError("the response was cut short")
            else:
                failure = "dropped"
        except ValueError:
            failure, keep = HttpError("a malformed response"), False
        except HttpError as exc:
            failure, keep = exc, False
        finally:
            if keep:
                self._idle.append(conn)
            else:
                writer.close()
        return statuses, failure

    def __str__(self) -> str:
        t = self.target
        return f"{t.scheme}://{t.host}:{t.port}"

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


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
