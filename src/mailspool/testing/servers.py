"""In-process servers for tests: a recording SMTP server (aiosmtpd) in a background
thread on a free loopback port, with optional STARTTLS and AUTH, and a scripted line
server for what aiosmtpd cannot be made to do."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mailspool.testing.invariant import Received, Violation, violation_of, violation_report
from mailspool.testing.oauth2 import sasl_oauth2


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    # reply codes to answer, in order, instead of 250 at DATA (e.g. ["451 4.3.0 later"])
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    #: asked about every RCPT: a reply to refuse it with, or None to take it
    rcpt_hook: Callable[[str], str | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    bcc: set[str] = field(default_factory=set)  # recipients that may be missing from To/Cc
    unchecked: str | None = None  # why messages are not checked; None: they are
    violations: list[Violation] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is None and self.rcpt_hook is not None:
            reply = self.rcpt_hook(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            bcc = tuple(self.bcc)
        login = session.auth_data
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            envelope.content,
            login.decode() if isinstance(login, bytes) else login,
            session.ssl is not None,
        )
        # checked here, on the server's loop: recorded, never raised (see assert_clean)
        violation = violation_of(received, bcc) if self.unchecked is None else None
        with self.lock:
            self.messages.append(received)
            if violation is not None:
                self.violations.append(violation)
        return "250 2.0.0 OK queued"


@dataclass
class _OAuth2Handler(_Handler):
    """Also XOAUTH2 and OAUTHBEARER, each token checked with ``check(user, token)``."""

    check: Callable[[str, str], bool] = lambda user, token: False

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        return await sasl_oauth2(server, args, "XOAUTH2", self.check)

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> Any:
        return await sasl_oauth2(server, args, "OAUTHBEARER", self.check)


@lru_cache(maxsize=1)
def _smtp_class() -> Any:
    from aiosmtpd.smtp import SMTP

    class LongLines(SMTP):
        # aiosmtpd refuses a line over 1001 octets with a 500 that a test may take for any
        # permanent failure; let it through to the invariant check, which fails the test
        line_length_limit = 1 << 20

    return LongLines


class RecordingSMTPServer:
    """An aiosmtpd server on 127.0.0.1, port chosen by the OS, in its own thread.

    ``tls``: an ssl.SSLContext to offer STARTTLS with; ``credentials``: (user, password)
    to require AUTH; ``oauth2``: ``check(user, token)`` to require AUTH XOAUTH2 or
    OAUTHBEARER (testing/oauth2.py has a token issuer); ``require_starttls``: refuse
    commands before STARTTLS; ``rcpt_hook(address)``: a reply to refuse a recipient
    with, or None (testing/throttle.py answers "too fast" past a rate).

    Every accepted message is checked with ``check_message`` as it arrives; ``bcc``
    (or ``allow_bcc`` before the message is sent) names recipients that may be absent
    from To/Cc, ``unchecked`` (the reason) turns the check off. Leaving the ``with``
    block raises AssertionError if any message broke the invariant. Lines of any length
    are taken (aiosmtpd would refuse one over 1001 octets) so that the check sees them.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        require_starttls: bool = False,
        bcc: Iterable[str] = (),
        unchecked: str | None = None,
        oauth2: Callable[[str, str], bool] | None = None,
        rcpt_hook: Callable[[str], str | None] | None = None,
    ) -> None:
        bcc = {a.lower() for a in bcc}
        self.handler = (
            _Handler(bcc=bcc, unchecked=unchecked)
            if oauth2 is None
            else _OAuth2Handler(bcc=bcc, unchecked=unchecked, check=oauth2)
        )
        self.handler.rcpt_hook = rcpt_hook
        self.oauth2 = oauth2
        self.tls = tls
        self.credentials = credentials
        self.require_starttls = require_starttls
        self.port = 0
        self.auth_attempts: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._protocols: list[Any] = []

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def violations(self) -> list[Violation]:
        """The messages received so far that broke the invariant."""
        with self.handler.lock:
            return list(self.handler.violations)

    def allow_bcc(self, *addresses: str) -> None:
        """Let messages sent from now on have these envelope recipients outside To/Cc."""
        with self.handler.lock:
            self.handler.bcc.update(a.lower() for a in addresses)

    def assert_clean(self) -> None:
        """Raise AssertionError if any message received broke the invariant."""
        if found := self.violations:
            raise AssertionError(violation_report(found))

    def _authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult

        user = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
        password = (
            data.password.decode() if isinstance(data.password, bytes) else str(data.password)
        )
        self.auth_attempts.append((user, password))
        ok = self.credentials is not None and (user, password) == self.credentials
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    def _factory(self) -> Any:
        proto = _smtp_class()(
            self.handler,
            hostname="mailspool-test",
            ident="mailspool-test",
            tls_context=self.tls,
            require_starttls=self.require_starttls,
            auth_required=self.credentials is not None or self.oauth2 is not None,
            auth_require_tls=self.tls is not None,
            authenticator=self._authenticator if self.credentials else None,
            # with OAuth2 only, no password is taken
            auth_exclude_mechanism=[] if self.credentials else ["PLAIN", "LOGIN"],
        )
        self._protocols.append(proto)
        return proto

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for proto in self._protocols:
            if proto.transport is not None:
                proto.transport.close()
        await asyncio.sleep(0.05)  # let the handlers see the close
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            loop.create_server(self._factory, "127.0.0.1", 0, reuse_address=True)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    def start(self) -> RecordingSMTPServer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="smtpd")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test SMTP server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> RecordingSMTPServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop()
        if exc_type is None:  # a failing block's own error says more
            self.assert_clean()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class LineServer:
    """A scripted SMTP-ish server for what aiosmtpd cannot be made to do: it records every
    line it receives and answers with ``respond(line) -> reply or None``. ``greeting=None``
    accepts the connection and never greets."""

    def __init__(
        self,
        respond: Any = None,
        greeting: str | None = "220 scripted ESMTP",
    ) -> None:
        self.respond = respond or (lambda line: "250 OK")
        self.greeting = greeting
        self.lines: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.greeting is not None:
            writer.write(self.greeting.encode() + b"\r\n")
        in_data = False
        try:
            while line := await reader.readline():
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if in_data:
                    if text != ".":
                        continue
                    in_data = False
                    text = "<end of data>"
                self.lines.append(text)
                reply = self.respond(text)
                if reply is None:
                    continue
                if reply == "<close>":
                    break
                writer.write(reply.encode() + b"\r\n")
                if text.upper() == "DATA" and reply.startswith("354"):
                    in_data = True
                if text.upper() == "QUIT":
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        for w in self._writers:
            w.close()
        tasks = asyncio.all_tasks(loop)
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        # a closed transport lets go of its socket in a callback: let those run, or the
        # sockets of clients still connecting are left to the garbage collector
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()

    def __enter__(self) -> LineServer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="lineserver")
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
