"""SMTP delivery through a pool of reused sessions.

A session goes back to the pool after a successful transaction and is closed after any
error, after ``max_age`` seconds, or after ``max_messages`` messages.
"""

from __future__ import annotations

import ssl

from mailspool.transport.base import Delivery, Envelope, Ready, Transport
from mailspool.transport.session import SMTPSession
from mailspool.transport.url import SMTPSettings, parse_smtp_url


class SMTPTransport(Transport):
    """Delivers through a pool of reused, pipelined sessions to the relay ``settings``
    describe (parse_smtp_url)."""

    @classmethod
    def from_url(cls, url: str, **timeouts: float) -> SMTPTransport:
        return cls(parse_smtp_url(url, **timeouts))

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.description = settings.redacted
        self._tls: ssl.SSLContext | None = (
            settings.tls_context() if settings.implicit_tls or settings.starttls != "off" else None
        )
        self._idle: list[SMTPSession] = []
        self._busy = 0  # sessions lent to a send right now
        self.opened = 0  # sessions opened, for metrics and tests

    @property
    def open_connections(self) -> int:
        """Connections open now, in use or idle: counting only idle ones would show 0 while
        every connection is busy. May be read from a metrics thread, hence the copy."""
        return self._busy + sum(1 for s in list(self._idle) if s.connected)

    async def _acquire(self) -> SMTPSession:
        while self._idle:
            session = self._idle.pop()
            if session.usable:
                return session
            await session.quit()
        session = SMTPSession(self.settings, self._tls)
        self.opened += 1
        try:
            await session.connect()
        except BaseException:
            session.abort()
            raise
        return session

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        session = await self._acquire()
        if ready is not None:
            try:
                await ready()
            except BaseException:
                self._idle.append(session)  # not used: back to the pool
                raise
            if not session.usable:  # it waited long enough for the relay to hang up
                await session.quit()
                session = await self._acquire()
        self._busy += 1
        try:
            delivery = await session.send(envelope.sender, envelope.recipients, envelope.data)
        except BaseException:
            session.abort()
            raise
        finally:
            self._busy -= 1
        self._idle.append(session)
        return delivery

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for session in idle:
            await session.quit()
