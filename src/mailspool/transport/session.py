"""One SMTP client session on a raw asyncio protocol, with PIPELINING (RFC 2920).

aiosmtplib waits for each reply before sending the next command and discards replies it
did not ask for, so it cannot pipeline; a pipelined transaction needs two round trips
instead of four, which is most of the client's cost on a fast relay. aiosmtplib's pure
helpers still do EHLO parsing and AUTH encoding.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

from aiosmtplib.auth import auth_login_encode, auth_plain_encode
from aiosmtplib.esmtp import parse_esmtp_extensions

from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    SMTPTimeout,
    Stage,
    TLSFailure,
)
from mailspool.transport.base import Delivery
from mailspool.transport.oauth2 import ABORT, initial_response
from mailspool.transport.url import SMTPSettings
from mailspool.transport.wire import Reply, ReplyProtocol, lost_error, stuff

#: told that a message's transaction has begun (its MAIL FROM is written)
Begun = Callable[[], None]


def _nothing() -> None:
    pass


class SMTPSession:
    """A connected, greeted, possibly TLS-upgraded and authenticated session."""

    def __init__(self, settings: SMTPSettings, tls: ssl.SSLContext | None) -> None:
        self.settings = settings
        self._tls = tls
        self._proto = ReplyProtocol()
        self.extensions: dict[str, str] = {}
        self.auth_methods: list[str] = []
        self.encrypted = False
        self.created = time.monotonic()
        self.messages = 0
        #: messages this session carries before it is closed, if fewer than the URL's
        self.limit = 0

    @property
    def connected(self) -> bool:
        t = self._proto.transport
        return self._proto.lost is None and t is not None and not t.is_closing()

    @property
    def usable(self) -> bool:
        s = self.settings
        return (
            self.connected
            # a reply nobody asked for (a 421 while idle) would answer our next command
            and not self._proto.replies
            and time.monotonic() - self.created < s.max_age
            and (s.max_messages <= 0 or self.messages < s.max_messages)
            and (self.limit <= 0 or self.messages < self.limit)
        )

    # -- low level --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        t = self._proto.transport
        if t is None or t.is_closing() or self._proto.lost is not None:
            raise lost_error(self._proto.lost or ConnectionResetError("closed"), Stage.WRITE)
        t.write(data)

    async def _replies(self, n: int, stage: Stage, timeout: float | None = None) -> list[Reply]:
        proto = self._proto
        await proto.wait_for_replies(n, timeout or self.settings.command_timeout, stage)
        return [proto.replies.popleft() for _ in range(n)]

    async def _command(self, line: bytes, stage: Stage) -> Reply:
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
            raise SMTPTimeout(
                f"connect to {s.host}:{s.port} timed out", stage=Stage.CONNECT
            ) from exc
        except ssl.SSLError as exc:
            raise TLSFailure(
                f"TLS handshake with {s.host}: {exc.reason or exc}", stage=Stage.CONNECT
            ) from exc
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {s.host}:{s.port}: {exc.strerror or exc}"
            ) from exc
        self.encrypted = s.implicit_tls
        greeting = (await self._replies(1, Stage.GREETING, s.connect_timeout))[0]
        if greeting.code != 220:
            raise greeting.error(Stage.GREETING)
        await self._ehlo()
        if not s.implicit_tls:
            await self._maybe_starttls()
        if s.username:
            await self._login()

    async def _ehlo(self) -> None:
        name = (self.settings.local_hostname or "localhost").encode("ascii")
        reply = await self._command(b"EHLO " + name, Stage.EHLO)
        if reply.code == 250:
            self.extensions, self.auth_methods = parse_esmtp_extensions(reply.text)
            return
        if reply.code == 421:  # the server is closing: a HELO would only meet the hang-up
            raise reply.error(Stage.EHLO)
        reply = await self._command(b"HELO " + name, Stage.EHLO)
        if reply.code != 250:
            raise reply.error(Stage.EHLO)
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
                stage=Stage.STARTTLS,
            )
        proto = self._proto
        reply = await self._command(b"STARTTLS", Stage.STARTTLS)
        if reply.code != 220:
            raise reply.error(Stage.STARTTLS, TLSFailure)
        proto.discard_buffered()  # whatever came with the 220 was sent before the handshake
        if not self.connected:
            # start_tls on a closed transport never completes, not even at its timeout
            lost = proto.lost or ConnectionResetError("closed")
            raise TLSFailure(
                f"connection to {s.host} lost before the TLS handshake: {lost}",
                stage=Stage.STARTTLS,
            ) from lost
        loop = asyncio.get_running_loop()
        assert self._tls is not None and proto.transport is not None
        try:
            # a bound of our own too, in case the loop's handshake timeout never fires; not
            # wait_for, whose extra task lets the server's EOF in before start_tls begins
            async with asyncio.timeout(s.connect_timeout + 1):
                transport = await loop.start_tls(
                    proto.transport,
                    proto,
                    self._tls,
                    server_hostname=s.host,
                    ssl_handshake_timeout=s.connect_timeout,
                )
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSFailure(f"TLS handshake with {s.host}: {exc}", stage=Stage.STARTTLS) from exc
        except (OSError, TimeoutError) as exc:  # reset, EOF or silence mid-handshake
            raise TLSFailure(
                f"TLS handshake with {s.host} failed: {exc!r}", stage=Stage.STARTTLS
            ) from exc
        if transport is None or transport.is_closing() or proto.lost is not None:
            # uvloop returns a closed transport when the server hung up mid-handshake
            raise TLSFailure(
                f"TLS handshake with {s.host} failed: connection closed", stage=Stage.STARTTLS
            ) from proto.lost
        proto.transport = transport
        self.encrypted = True
        await self._ehlo()

    async def _login(self) -> None:
        s = self.settings
        if not self.encrypted and not s.loopback:
            raise AuthFailure("refusing to send credentials without TLS", stage=Stage.AUTH)
        if "auth" not in self.extensions:
            raise AuthFailure(f"{s.host} does not offer AUTH", stage=Stage.AUTH)
        if s.auth is not None:
            return await self._login_oauth2(s.auth)
        assert s.username is not None and s.password is not None
        if "plain" in self.auth_methods:
            reply = await self._command(
                b"AUTH PLAIN " + auth_plain_encode(s.username, s.password), Stage.AUTH
            )
        elif "login" in self.auth_methods:
            user, password = auth_login_encode(s.username, s.password)
            reply = await self._command(b"AUTH LOGIN", Stage.AUTH)
            if reply.code == 334:
                reply = await self._command(user, Stage.AUTH)
            if reply.code == 334:
                reply = await self._command(password, Stage.AUTH)
        else:
            raise AuthFailure(
                f"no supported AUTH mechanism among {self.auth_methods}", stage=Stage.AUTH
            )
        if reply.code != 235:
            raise reply.error(Stage.AUTH, AuthFailure)

    async def _login_oauth2(self, mechanism: str) -> None:
        """AUTH XOAUTH2 or OAUTHBEARER with the token source's token; a refused token
        is replaced by a fresh one and tried once more (it may have just expired)."""
        s = self.settings
        assert s.username is not None and s.oauth2 is not None
        if mechanism not in self.auth_methods:
            raise AuthFailure(
                f"{s.host} does not offer AUTH {mechanism.upper()} (it offers"
                f" {', '.join(self.auth_methods) or 'none'})",
                stage=Stage.AUTH,
            )
        for _ in range(2):
            token = await s.oauth2.token()
            blob = initial_response(mechanism, s.username, token, s.host, s.port)
            reply = await self._command(
                b"AUTH " + mechanism.upper().encode() + b" " + blob, Stage.AUTH
            )
            if reply.code == 334:  # the error, as a challenge: end the exchange to hear it
                reply = await self._command(ABORT[mechanism], Stage.AUTH)
            if reply.code == 235:
                return
            s.oauth2.refused(token)
            if reply.code // 100 != 5:
                break  # a temporary failure: a fresh token would not help now
        raise reply.error(Stage.AUTH, AuthFailure)

    # -- transactions -------------------------------------------------------------

    async def send(
        self, sender: str, recipients: tuple[str, ...], data: bytes, begun: Begun = _nothing
    ) -> Delivery:
        """One mail transaction; ``begun()`` is called once MAIL FROM is written. Raises
        when no recipient got the message."""
        if "pipelining" in self.extensions:
            return await self._send_pipelined(sender, recipients, data, begun)
        return await self._send_serial(sender, recipients, data, begun)

    def _mail_cmd(self, sender: str, size: int) -> bytes:
        params = f" SIZE={size}" if "size" in self.extensions else ""
        return f"MAIL FROM:<{sender}>{params}\r\n".encode("ascii")

    async def _send_pipelined(
        self, sender: str, recipients: tuple[str, ...], data: bytes, begun: Begun
    ) -> Delivery:
        payload = stuff(data)
        # RSET between messages on a reused connection; pipelined, it costs no round trip
        rset = self.messages > 0
        cmds = [b"RSET\r\n"] if rset else []
        cmds.append(self._mail_cmd(sender, len(data)))
        cmds += [f"RCPT TO:<{r}>\r\n".encode("ascii") for r in recipients]
        cmds.append(b"DATA\r\n")
        self._write(b"".join(cmds))
        begun()
        try:
            replies = await self._replies(len(cmds), Stage.MAIL)
        except ConnectError as exc:
            said = self._said_before_hang_up(list(self._proto.replies), rset, recipients)
            if said is None:
                raise
            raise said from exc
        if rset:
            replies.pop(0)  # RSET: its reply does not matter once MAIL is answered
        mail, rcpts, data_reply = replies[0], replies[1:-1], replies[-1]
        refused = self._check_envelope(mail, recipients, rcpts)
        if data_reply.code != 354:
            raise data_reply.error(Stage.DATA)
        return await self._transmit(payload, refused)

    def _said_before_hang_up(
        self, got: list[Reply], rset: bool, recipients: tuple[str, ...]
    ) -> DeliveryError | None:
        """The reply that decides a pipelined batch cut short by a hang-up, if one arrived:
        a 421 (the server is closing: pause the relay), a refused MAIL, or every recipient
        refused. One refused recipient among several decides nothing."""
        stages = [Stage.RSET] * rset + [Stage.MAIL] + [Stage.RCPT] * len(recipients)
        for reply, stage in zip(got, stages, strict=False):
            if reply.code == 421:
                return reply.error(stage)
        got = got[rset:]
        if got and got[0].code != 250:
            return got[0].error(Stage.MAIL)
        if len(got) == len(recipients) + 1:  # every RCPT answered, only DATA's reply missing
            try:
                self._check_envelope(got[0], recipients, got[1:])
            except DeliveryError as err:
                return err
        return None

    async def _send_serial(
        self, sender: str, recipients: tuple[str, ...], data: bytes, begun: Begun
    ) -> Delivery:
        if self.messages:
            rset = await self._command(b"RSET", Stage.RSET)
            if rset.code != 250:  # a 421 here must not be lost to the next command's write
                raise rset.error(Stage.RSET)
        self._write(self._mail_cmd(sender, len(data)))
        begun()
        mail = (await self._replies(1, Stage.MAIL))[0]
        if mail.code != 250:
            raise mail.error(Stage.MAIL)
        rcpts = []
        for r in recipients:
            rcpt = await self._command(f"RCPT TO:<{r}>".encode("ascii"), Stage.RCPT)
            if rcpt.code == 421:
                # the server is closing the session: not a refusal of this recipient, and
                # the next command would only meet the hang-up (a retry, no relay pause)
                raise rcpt.error(Stage.RCPT)
            rcpts.append(rcpt)
        refused = self._check_envelope(mail, recipients, rcpts)
        data_reply = await self._command(b"DATA", Stage.DATA)
        if data_reply.code != 354:
            raise data_reply.error(Stage.DATA)
        return await self._transmit(stuff(data), refused)

    async def _transmit(self, payload: bytes, refused: dict[str, str]) -> Delivery:
        """The message and its final dot, after a 354."""
        timeout = self.settings.data_timeout
        self._write(payload)
        await self._proto.drain(timeout)  # stage "data": the final dot has not left yet
        return self._finish((await self._replies(1, Stage.DOT, timeout))[0], refused)

    @staticmethod
    def _check_envelope(
        mail: Reply, recipients: tuple[str, ...], rcpts: list[Reply]
    ) -> dict[str, str]:
        for rep, stage in ((mail, Stage.MAIL), *((rep, Stage.RCPT) for rep in rcpts)):
            if rep.code == 421:  # the server is closing the session, whatever else it said
                raise rep.error(stage)
        if mail.code != 250:
            raise mail.error(Stage.MAIL)
        refused = {
            r: f"{rep.code} {rep.text}"
            for r, rep in zip(recipients, rcpts, strict=True)
            if rep.code >= 300
        }
        if len(refused) == len(recipients):
            # every recipient refused: report the most hopeful reply (a 4xx beats a 5xx)
            worst = min(rcpts, key=lambda rep: rep.code)
            err = worst.error(Stage.RCPT)
            err.refused = refused
            raise err
        return refused

    def _finish(self, final: Reply, refused: dict[str, str]) -> Delivery:
        self.messages += 1
        if final.code != 250:
            raise final.error(Stage.DOT)
        return Delivery(final.code, final.text, refused)

    async def quit(self) -> None:
        t = self._proto.transport
        if t is None or t.is_closing() or self._proto.lost is not None:
            self.abort()
            return
        try:
            self._write(b"QUIT\r\n")
            await self._replies(1, Stage.QUIT, 5.0)
        except DeliveryError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        t = self._proto.transport
        if t is None or t.is_closing():
            return
        if t.get_write_buffer_size():
            # close() would keep the socket until a server that stopped reading takes the
            # rest of the message, which may be never
            t.abort()
        else:
            t.close()  # a TLS peer gets its close_notify
