"""Test helpers shipped with the package: a recording SMTP server (aiosmtpd) that runs in
a background thread on a free loopback port, with optional STARTTLS and AUTH, and a
wrapper around Postfix's ``smtp-sink`` for fault injection.

Needs the ``dev`` extra (aiosmtpd, trustme).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    auth: str | None = None
    tls: bool = False

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    # reply codes to answer, in order, instead of 250 at DATA (e.g. ["451 4.3.0 later"])
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            login = session.auth_data
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.content,
                    login.decode() if isinstance(login, bytes) else login,
                    session.ssl is not None,
                )
            )
        return "250 2.0.0 OK queued"


class RecordingSMTPServer:
    """An aiosmtpd server on 127.0.0.1, port chosen by the OS, in its own thread.

    ``tls``: an ssl.SSLContext to offer STARTTLS with; ``credentials``: (user, password)
    to require AUTH; ``require_starttls``: refuse commands before STARTTLS.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        require_starttls: bool = False,
    ) -> None:
        self.handler = _Handler()
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
        from aiosmtpd.smtp import SMTP

        proto = SMTP(
            self.handler,
            hostname="mailspool-test",
            ident="mailspool-test",
            tls_context=self.tls,
            require_starttls=self.require_starttls,
            auth_required=self.credentials is not None,
            auth_require_tls=self.tls is not None,
            authenticator=self._authenticator if self.credentials else None,
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

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


class SMTPSink:
    """Postfix's smtp-sink on a free loopback port. ``options`` are passed through, e.g.
    ``["-r", "rcpt"]`` to reject RCPT, ``["-Q", "data"]`` to hang up after DATA."""

    def __init__(self, *options: str, backlog: int = 256, dump: bool = False) -> None:
        self.options = list(options)
        self.backlog = backlog
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # a file smtp-sink appends every message to (-D); in a directory of its own that
        # the unprivileged smtp-sink can reach (pytest's tmp_path is private to root)
        self._dump_dir = tempfile.mkdtemp(prefix="mailspool-sink-") if dump else None
        self.dump = os.path.join(self._dump_dir, "messages") if self._dump_dir else None

    def received(self) -> list[tuple[list[str], str]]:
        """(recipients, Message-ID) of every message in the dump file, in order."""
        if self.dump is None or not os.path.exists(self.dump):
            return []
        out: list[tuple[list[str], str]] = []
        rcpts: list[str] = []
        with open(self.dump, "rb") as f:
            for line in f:
                if line.startswith(b"X-Client-Addr:"):
                    rcpts = []
                elif line.startswith(b"X-Rcpt-Args:"):
                    rcpts.append(line.split(b":", 1)[1].strip().strip(b"<>").decode())
                elif line.lower().startswith(b"message-id:"):
                    out.append((rcpts, line.split(b":", 1)[1].strip().decode()))
        return out

    @staticmethod
    def available() -> bool:
        return shutil.which(SMTP_SINK) is not None or os.path.exists(SMTP_SINK)

    def start(self) -> SMTPSink:
        cmd = [SMTP_SINK, *self.options]
        if self._dump_dir is not None and self.dump is not None:
            os.chmod(self._dump_dir, 0o777)
            cmd += ["-D", self.dump]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root otherwise
        cmd += [f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_listening(self.port):
            self.stop()
            raise RuntimeError(f"smtp-sink did not start: {' '.join(cmd)}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        if self._dump_dir is not None:
            shutil.rmtree(self._dump_dir, ignore_errors=True)

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


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
