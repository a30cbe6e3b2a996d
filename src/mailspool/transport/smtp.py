"""SMTP delivery through a pool of reused sessions.

A session goes back to the pool after a successful transaction and is closed after any
error, after ``max_age`` seconds, or after ``max_messages`` messages (or the envelope's,
when fewer). Each ``envelope.pool`` (a provider, when shaping) has sessions of its own.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from mailspool.transport.base import Delivery, Envelope, Ready, Transport
from mailspool.transport.url import SMTPSettings, parse_smtp_url

if TYPE_CHECKING:
    from mailspool.transport.session import SMTPSession


class SMTPTransport(Transport):
    """Delivers through a pool of reused, pipelined sessions to the relay ``settings``
    describe (parse_smtp_url)."""

    @classmethod
    def from_url(cls, url: str, **timeouts: float) -> SMTPTransport:
        return cls(parse_smtp_url(url, **timeouts))

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.description = settings.redacted
        # made for the first connection: loading the system's CA certificates takes 20 ms,
        # which a command should not spend before it starts on its work
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[str, list[SMTPSession]] = {}  # by pool (envelope.pool)
        self._busy = 0  # sessions lent to a send right now
        self.opened = 0  # sessions opened, for metrics and tests

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if self._tls is None and (s.implicit_tls or s.starttls != "off"):
            self._tls = s.tls_context()
        return self._tls

    @property
    def open_connections(self) -> int:
        """Connections open now, in use or idle: counting only idle ones would show 0 while
        every connection is busy. May be read from a metrics thread, hence the copy."""
        pools = list(self._idle.values())
        return self._busy + sum(1 for pool in pools for s in list(pool) if s.connected)

    async def _acquire(self, envelope: Envelope) -> SMTPSession:
        idle = self._idle.setdefault(envelope.pool, [])
        while idle:
            session = idle.pop()
            if session.usable:
                return session
            await session.quit()
        from mailspool.transport.session import SMTPSession  # aiosmtplib: at the first connection

        session = SMTPSession(self.settings, self._tls_context())
        session.limit = envelope.max_messages
        self.opened += 1
        try:
            await session.connect()
        except BaseException:
            session.abort()
            raise
        return session

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        session = await self._acquire(envelope)
        idle = self._idle[envelope.pool]
        if ready is not None:
            try:
                await ready()
            except BaseException:
                idle.append(session)  # not used: back to the pool
                raise
            if not session.usable:  # it waited long enough for the relay to hang up
                await session.quit()
                session = await self._acquire(envelope)
        self._busy += 1
        try:
            delivery = await session.send(
                envelope.sender, envelope.recipients, envelope.data, envelope.begin
            )
        except BaseException:
            session.abort()
            raise
        finally:
            self._busy -= 1
        idle.append(session)
        return delivery

    async def close(self) -> None:
        pools, self._idle = self._idle, {}
        for idle in pools.values():
            for session in idle:
                await session.quit()
