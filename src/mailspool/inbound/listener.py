"""An SMTP listener for returned mail (aiosmtpd): the MX of the return-path domain and
of the unsubscribe mailbox.

It takes RCPT only for the return path (its base and its VERP forms LOCAL+TOKEN@DOMAIN,
whatever the token's signature: a token no secret verifies is matched by Message-ID,
or kept unmatched) and for the unsubscribe addresses; anything else is refused with
``550 5.1.1``, so it never relays. Each message goes through
:func:`~mailspool.inbound.receive.receive` once per envelope recipient (RCPT TO is the
address it was delivered to), and is answered 250 only once every outcome is written:
if the store fails, ``451 4.3.0`` makes the sender keep it and retry (handling is
idempotent, so a partial attempt done again records nothing twice).

A message over ``max_size`` is refused with 552, up front when MAIL FROM declares its
SIZE, else at the end of DATA. STARTTLS is offered when a TLS context is given.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailspool.inbound.handle import Handled, SoftBouncePolicy, Store
from mailspool.inbound.parse import DEFAULT_MAX_BYTES, is_unsubscribe_request
from mailspool.inbound.receive import receive
from mailspool.inbound.report import Report
from mailspool.message.verp import ReturnPath

__all__ = ["Listener", "Outcome", "ReturnedMail"]

#: recipients of one message: a bounce has one; more is a sender misbehaving
MAX_RECIPIENTS = 100
#: a line may be longer than RFC 5321's 1,000 octets: a returned message is taken as it
#: is (the size limit bounds it), not refused for the way its sender wrapped it
LINE_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message for one envelope recipient: the report and what
    :func:`~mailspool.inbound.handle.handle` did, or ``error`` (then nothing is known to
    be written, and the sender was told to retry)."""

    peer: str
    mail_from: str
    envelope_to: str
    size: int
    report: Report | None
    handled: list[Handled] = field(default_factory=list)
    error: str | None = None
    tls: bool = False  # whether the session was under STARTTLS


class ReturnedMail:
    """The aiosmtpd handler: which recipients are taken, and what a message does.

    ``on_outcome`` is told of every message and recipient (the command logs them)."""

    def __init__(
        self,
        *,
        store: Store,
        return_path: ReturnPath | None,
        unsubscribe_to: Collection[str],
        policy: SoftBouncePolicy,
        on_outcome: Callable[[Outcome], None],
        max_size: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.return_path = return_path
        self.unsubscribe_to = frozenset(unsubscribe_to)
        self.policy = policy
        self.on_outcome = on_outcome
        self.max_size = max_size
        self.clock = clock
        self.closing = False
        self._busy: set[asyncio.Task[str]] = set()

    def accepts(self, address: str) -> bool:
        """Whether mail to ``address`` is ours to take."""
        if self.return_path is not None and self.return_path.owns(address):
            return True
        return is_unsubscribe_request(address, self.unsubscribe_to)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.closing:
            return "451 4.3.2 Shutting down, try again later"
        if not self.accepts(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.closing:
            return "451 4.3.2 Shutting down, try again later"
        peer = session.peer
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        tls = session.ssl is not None
        task = asyncio.ensure_future(
            self._apply(who, envelope.mail_from or "", list(envelope.rcpt_tos),
                        envelope.original_content or b"", tls)
        )  # fmt: skip
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)
        # shielded: a sender that hangs up does not cut a handling in half, and a stop
        # waits for it (drain)
        return await asyncio.shield(task)

    async def _apply(
        self, peer: str, mail_from: str, rcpts: list[str], data: bytes, tls: bool
    ) -> str:
        ok = True
        for rcpt in rcpts:
            try:
                report, handled = await receive(
                    data, envelope_to=rcpt, store=self.store, return_path=self.return_path,
                    unsubscribe_to=self.unsubscribe_to, policy=self.policy, now=self.clock(),
                    max_bytes=self.max_size,
                )  # fmt: skip
            except Exception as exc:  # the store failed: nothing durable, the sender retries
                ok = False
                error = f"{type(exc).__name__}: {exc}"
                self.on_outcome(
                    Outcome(peer, mail_from, rcpt, len(data), None, error=error, tls=tls)
                )
                break
            self.on_outcome(Outcome(peer, mail_from, rcpt, len(data), report, handled, tls=tls))
        if not ok:
            return "451 4.3.0 Could not record the message, try again later"
        return "250 2.0.0 OK"

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the messages being handled."""
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=timeout)


class _Server(SMTP):
    line_length_limit = LINE_LIMIT


class Listener:
    """The listening socket: ``await start()`` binds ``host:port`` (port 0: one the OS
    picks, then in ``port``), ``await stop()`` stops taking connections, waits for the
    messages being handled and closes the sessions still open."""

    def __init__(
        self,
        handler: ReturnedMail,
        *,
        host: str = "127.0.0.1",
        port: int = 2525,
        tls: ssl.SSLContext | None = None,
        hostname: str | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.tls = tls
        # not aiosmtpd's default, socket.getfqdn(), which may wait on DNS
        self.hostname = hostname or socket.gethostname()
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _session(self) -> SMTP:
        session = _Server(
            self.handler,
            data_size_limit=self.handler.max_size,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            ident="mailspool",
            tls_context=self.tls,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],  # no AUTH: nobody logs in to an MX
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 30.0) -> None:
        self.handler.closing = True
        if self._server is not None:
            self._server.close()
        await self.handler.drain(grace)
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
