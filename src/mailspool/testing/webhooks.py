"""A webhook receiver for tests and benchmarks: an HTTP/1.1 server on a free loopback
port, in its own thread, that records every request and answers as told.

``statuses`` is a list of status codes to answer first, in order (``[503, 503]``: the
first two requests fail), then ``status`` (204 by default); ``delay`` holds each
response back. ``count_only`` keeps no request, only their number (for benchmarks).
Run as ``python -m mailspool.testing.webhooks PORT`` it serves until killed and prints
how many requests it took when it stops (SIGTERM).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from dataclasses import dataclass, field

from mailspool.testing.servers import free_port

__all__ = ["Request", "WebhookReceiver"]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _State:
    status: int = 204
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    count_only: bool = False
    requests: list[Request] = field(default_factory=list)
    count: int = 0
    open: set[asyncio.Transport] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.status


class _Protocol(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.open.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.state.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.state.count_only:
            self._count()
            return
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + n:
                return
            body, self.buf = self.buf[end + 4 : end + 4 + n], self.buf[end + 4 + n :]
            method, path, *_ = lines[0].split(" ")
            s = self.state
            with s.lock:
                s.count += 1
                if not s.count_only:
                    s.requests.append(Request(method, path, headers, body))
            status = s.next_status()
            if s.delay:
                asyncio.get_running_loop().call_later(s.delay, self._answer, status)
            else:
                self._answer(status)

    def _count(self) -> None:
        """The benchmark's receiver: count whole requests and answer, parsing no more
        than the length (so that it costs the sender's machine little)."""
        answers = 0
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            at = buf.find(b"Content-Length: ", 0, end)
            n = int(buf[at + 16 : buf.find(b"\r\n", at)]) if at >= 0 else 0
            if len(buf) < end + 4 + n:
                break
            buf = buf[end + 4 + n :]
            answers += 1
        self.buf = buf
        if answers and self.transport is not None:
            with self.state.lock:
                self.state.count += answers
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n" * answers)

    def _answer(self, status: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            body = b"" if status == 204 else b"{}"
            self.transport.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
            )


class WebhookReceiver:
    """The server, started by ``with`` (or :meth:`start`); ``url`` is its address."""

    def __init__(
        self,
        *,
        status: int = 204,
        statuses: list[int] | None = None,
        delay: float = 0.0,
        count_only: bool = False,
        port: int = 0,
    ) -> None:
        self.state = _State(status, list(statuses or []), delay, count_only)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def count(self) -> int:
        return self.state.count

    def answer(self, status: int, *, statuses: list[int] | None = None) -> None:
        with self.state.lock:
            self.state.status = status
            self.state.statuses = list(statuses or [])

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _Protocol(self.state), "127.0.0.1", self.port)
            )
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        """Stop listening (a down endpoint); :meth:`start` again listens on the same port."""
        if self._loop is not None and self._thread is not None:

            def down() -> None:
                for t in list(self.state.open):  # a stopped server holds no connection
                    t.close()
                assert self._loop is not None
                self._loop.stop()

            self._loop.call_soon_threadsafe(down)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    port = int(sys.argv[1])
    receiver = WebhookReceiver(port=port, count_only=True)
    receiver.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("listening", flush=True)
    done.wait()
    receiver.stop()
    print(receiver.count, flush=True)


if __name__ == "__main__":
    main()
