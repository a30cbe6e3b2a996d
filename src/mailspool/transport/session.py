"""One SMTP client session on a raw asyncio protocol, with PIPELINING (RFC 2920).

aiosmtplib waits for each reply before sending the next command and discards replies it
did not ask for, so it cannot pipeline; a pipelined transaction needs two round trips
instead of four, which is most of the client's cost on a fast relay. aiosmtplib's pure
helpers still do EHLO parsing and AUTH encoding.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass

from aiosmtplib.auth import auth_login_encode, auth_plain_encode
from aiosmtplib.esmtp import parse_esmtp_extensions

from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    ReplyError,
    SMTPTimeout,
    TLSFailure,
)
from mailspool.transport.base import Delivery
from mailspool.transport.url import SMTPSettings

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b\s*")
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def enhanced(self) -> str | None:
        m = _ENHANCED.match(self.text)
        return m.group(1) if m else None

    def error(self, stage: str, cls: type[DeliveryError] = ReplyError) -> DeliveryError:
        m = _ENHANCED.match(self.text)
        text = self.text[m.end() :] if m else self.text
        return cls(text.replace("\n", " "), code=self.code, enhanced=self.enhanced, stage=stage)


class _Protocol(asyncio.Protocol):
    """Parses replies as they arrive and wakes whoever waits for the n-th one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self._buf = bytearray()
        self._lines: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self.lost: BaseException | None = None
        self._can_write: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = buf.rfind(b"\n")
        if end < 0:
            if len(buf) > MAX_REPLY_BYTES:
                self._fail(ConnectError("reply line too long", stage="reply"))
            return
        chunk = bytes(buf[: end + 1])
        del buf[: end + 1]
        for line in chunk.split(b"\n")[:-1]:
            text = line[4:].rstrip(b"\r").decode("utf-8", "replace")
            self._lines.append(text)
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    self._fail(ConnectError(f"malformed reply {line[:80]!r}", stage="reply"))
                    return
                self.replies.append(Reply(code, "\n".join(self._lines)))
                self._lines = []
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done() and (len(self.replies) >= self._want or self.lost):
            w.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = exc or ConnectError("connection closed by the server", stage="reply")
        self._wake()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    async def drain(self) -> None:
        if self._can_write is not None:
            await self._can_write

    async def wait_for_replies(self, n: int, timeout: float, stage: str) -> None:
        if len(self.replies) >= n:
            return
        if self.lost is not None:
            raise _lost(self.lost, stage)
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._want = n
        # call_later instead of wait_for: no extra task per reply on the hot path
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if len(self.replies) < n:
            if self.lost is not None:
                raise _lost(self.lost, stage)
            raise SMTPTimeout(f"no reply within {timeout:g}s", stage=stage)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _lost(exc: BaseException, stage: str) -> DeliveryError:
    if isinstance(exc, DeliveryError):  # a fresh error: the stored one may be raised again
        err: DeliveryError = type(exc)(exc.text, code=exc.code, enhanced=exc.enhanced, stage=stage)
        err.__cause__ = exc
        return err
    err = ConnectError(f"connection lost: {exc}", stage=stage)
    err.__cause__ = exc
    return err


def _stuff(data: bytes) -> bytes:
    """Dot-stuff and terminate a CRLF message for DATA."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SMTPSession:
    """A connected, greeted, possibly TLS-upgraded and authenticated session."""

    def __init__(self, settings: SMTPSettings, tls: ssl.SSLContext | None) -> None:
        self.settings = settings
        self._tls = tls
        self._proto = _Protocol()
        self.extensions: dict[str, str] = {}
        self.auth_methods: list[str] = []
        self.encrypted = False
        self.created = time.monotonic()
        self.messages = 0

    @property
    def usable(self) -> bool:
        s = self.settings
        return (
            self._proto.lost is None
            and self._proto.transport is not None
            and not self._proto.transport.is_closing()
            and time.monotonic() - self.created < s.max_age
            and (s.max_messages <= 0 or self.messages < s.max_messages)
        )

    # -- low level --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        t = self._proto.transport
        if t is None or t.is_closing() or self._proto.lost is not None:
            raise _lost(self._proto.lost or ConnectionResetError("closed"), "write")
        t.write(data)

    async def _replies(self, n: int, stage: str, timeout: float | None = None) -> list[Reply]:
        proto = self._proto
        await proto.wait_for_replies(n, timeout or self.settings.command_timeout, stage)
        return [proto.replies.popleft() for _ in range(n)]

    async def _command(self, line: bytes, stage: str) -> Reply:
        self._write(line + b"\r\n")
        return (await self._replies(1, stage))[0]

    # -- session set-up -----------------------------------------------------------

    async def connect(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: self._proto,
                    s.host,
                    s.port,
                    ssl=self._tls if s.implicit_tls else None,
                    server_hostname=s.host if s.implicit_tls else None,
                ),
                s.connect_timeout,
            )
        except TimeoutError as exc:
            raise SMTPTimeout(f"connect to {s.host}:{s.port} timed out", stage="connect") from exc
        except ssl.SSLError as exc:
            raise TLSFailure(
                f"TLS handshake with {s.host}: {exc.reason or exc}", stage="connect"
            ) from exc
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {s.host}:{s.port}: {exc.strerror or exc}"
            ) from exc
        self.encrypted = s.implicit_tls
        greeting = (await self._replies(1, "greeting", s.connect_timeout))[0]
        if greeting.code != 220:
            raise greeting.error("greeting")
        await self._ehlo()
        if not s.implicit_tls:
            await self._maybe_starttls()
        if s.username:
            await self._login()

    async def _ehlo(self) -> None:
        name = (self.settings.local_hostname or "localhost").encode("ascii")
        reply = await self._command(b"EHLO " + name, "ehlo")
        if reply.code == 250:
            self.extensions, self.auth_methods = parse_esmtp_extensions(reply.text)
            return
        reply = await self._command(b"HELO " + name, "ehlo")
        if reply.code != 250:
            raise reply.error("ehlo")
        self.extensions, self.auth_methods = {}, []

    async def _maybe_starttls(self) -> None:
        s = self.settings
        offered = "starttls" in self.extensions
        if s.starttls == "off" or (s.starttls == "opportunistic" and not offered):
            return
        if not offered:
            raise TLSFailure(
                f"{s.host} does not offer STARTTLS, which is required for this relay"
                " (starttls=required); nothing was sent",
                stage="starttls",
            )
        reply = await self._command(b"STARTTLS", "starttls")
        if reply.code != 220:
            raise reply.error("starttls", TLSFailure)
        self._proto.replies.clear()  # RFC 3207: discard anything sent before the handshake
        loop = asyncio.get_running_loop()
        assert self._tls is not None and self._proto.transport is not None
        try:
            transport = await loop.start_tls(
                self._proto.transport,
                self._proto,
                self._tls,
                server_hostname=s.host,
                ssl_handshake_timeout=s.connect_timeout,
            )
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSFailure(f"TLS handshake with {s.host}: {exc}", stage="starttls") from exc
        except (OSError, TimeoutError) as exc:
            raise TLSFailure(
                f"TLS handshake with {s.host} failed: {exc!r}", stage="starttls"
            ) from exc
        if transport is None:
            raise TLSFailure("TLS handshake failed", stage="starttls")
        self._proto.transport = transport
        self.encrypted = True
        await self._ehlo()

    async def _login(self) -> None:
        s = self.settings
        assert s.username is not None and s.password is not None
        if not self.encrypted and not s.loopback:
            raise AuthFailure("refusing to send credentials without TLS", stage="auth")
        if "auth" not in self.extensions:
            raise AuthFailure(f"{s.host} does not offer AUTH", stage="auth")
        if "plain" in self.auth_methods:
            reply = await self._command(
                b"AUTH PLAIN " + auth_plain_encode(s.username, s.password), "auth"
            )
        elif "login" in self.auth_methods:
            user, password = auth_login_encode(s.username, s.password)
            reply = await self._command(b"AUTH LOGIN", "auth")
            if reply.code == 334:
                reply = await self._command(user, "auth")
            if reply.code == 334:
                reply = await self._command(password, "auth")
        else:
            raise AuthFailure(
                f"no supported AUTH mechanism among {self.auth_methods}", stage="auth"
            )
        if reply.code != 235:
            raise reply.error("auth", AuthFailure)

    # -- transactions -------------------------------------------------------------

    async def send(self, sender: str, recipients: tuple[str, ...], data: bytes) -> Delivery:
        """One mail transaction. Raises when no recipient got the message."""
        if "pipelining" in self.extensions:
            return await self._send_pipelined(sender, recipients, data)
        return await self._send_serial(sender, recipients, data)

    def _mail_cmd(self, sender: str, size: int) -> bytes:
        params = f" SIZE={size}" if "size" in self.extensions else ""
        return f"MAIL FROM:<{sender}>{params}\r\n".encode("ascii")

    async def _send_pipelined(
        self, sender: str, recipients: tuple[str, ...], data: bytes
    ) -> Delivery:
        payload = _stuff(data)
        # RSET between messages on a reused connection; pipelined, it costs no round trip
        cmds = [b"RSET\r\n"] if self.messages else []
        cmds.append(self._mail_cmd(sender, len(data)))
        cmds += [f"RCPT TO:<{r}>\r\n".encode("ascii") for r in recipients]
        cmds.append(b"DATA\r\n")
        self._write(b"".join(cmds))
        replies = await self._replies(len(cmds), "mail")
        if len(cmds) > len(recipients) + 2:
            replies.pop(0)  # RSET: its reply does not matter once MAIL is answered
        mail, rcpts, data_reply = replies[0], replies[1:-1], replies[-1]
        refused = self._check_envelope(mail, recipients, rcpts)
        if data_reply.code != 354:
            raise data_reply.error("data")
        self._write(payload)
        await self._proto.drain()
        return self._finish((await self._replies(1, "dot", self.settings.data_timeout))[0], refused)

    async def _send_serial(self, sender: str, recipients: tuple[str, ...], data: bytes) -> Delivery:
        if self.messages:
            await self._command(b"RSET", "rset")
        mail = await self._command(self._mail_cmd(sender, len(data))[:-2], "mail")
        if mail.code != 250:
            raise mail.error("mail")
        rcpts = [await self._command(f"RCPT TO:<{r}>".encode("ascii"), "rcpt") for r in recipients]
        refused = self._check_envelope(mail, recipients, rcpts)
        data_reply = await self._command(b"DATA", "data")
        if data_reply.code != 354:
            raise data_reply.error("data")
        self._write(_stuff(data))
        await self._proto.drain()
        return self._finish((await self._replies(1, "dot", self.settings.data_timeout))[0], refused)

    @staticmethod
    def _check_envelope(
        mail: Reply, recipients: tuple[str, ...], rcpts: list[Reply]
    ) -> dict[str, str]:
        if mail.code != 250:
            raise mail.error("mail")
        refused = {
            r: f"{rep.code} {rep.text}"
            for r, rep in zip(recipients, rcpts, strict=True)
            if rep.code >= 300
        }
        if len(refused) == len(recipients):
            # every recipient refused: report the most hopeful reply (a 4xx beats a 5xx)
            worst = min(rcpts, key=lambda rep: rep.code)
            err = worst.error("rcpt")
            err.refused = refused
            raise err
        return refused

    def _finish(self, final: Reply, refused: dict[str, str]) -> Delivery:
        self.messages += 1
        if final.code != 250:
            raise final.error("dot")
        return Delivery(final.code, final.text, refused)

    async def quit(self) -> None:
        t = self._proto.transport
        if t is None or t.is_closing() or self._proto.lost is not None:
            self.abort()
            return
        try:
            self._write(b"QUIT\r\n")
            await self._replies(1, "quit", 5.0)
        except DeliveryError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        t = self._proto.transport
        if t is not None and not t.is_closing():
            t.close()
