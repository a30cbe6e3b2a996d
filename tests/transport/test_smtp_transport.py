"""The SMTP transport against real servers: aiosmtpd (STARTTLS, AUTH, no PIPELINING),
Postfix's smtp-sink (PIPELINING, fault injection), a scripted line server, and raw asyncio
servers for faults none of those can produce (a server that stops reading, STARTTLS
faults)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from mailspool.delivery.classify import Action, classify
from mailspool.errors import AuthFailure, ConnectError, ReplyError, SMTPTimeout, TLSFailure
from mailspool.testing import LineServer, RecordingSMTPServer, SMTPSink, free_port
from mailspool.transport import Envelope, SMTPTransport, parse_smtp_url
from mailspool.transport.session import SMTPSession

try:
    import uvloop
except ImportError:  # Windows: the CLI runs on asyncio's own loop there
    uvloop = None

MSG = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\n.dot line\r\nbody\r\n"
# the transport carries whatever bytes it is given: these tests send MSG as it is (no Date,
# no Message-ID) to recipients its To does not name, so the servers do not check it
RAW = "a test of the transport, which sends the fixed raw message MSG"
pytestmark = pytest.mark.unchecked_mail(RAW)


def env(*rcpts: str) -> Envelope:
    return Envelope("a@example.com", rcpts or ("b@example.com",), MSG)


async def test_plain_loopback_delivery_reuses_one_connection(smtpd: RecordingSMTPServer) -> None:
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{smtpd.port}"))
    for _ in range(5):
        d = await t.send(env())
        assert d.code == 250
    await t.close()
    assert t.opened == 1
    assert len(smtpd.messages) == 5
    # dot-stuffing round-trips: the line starting with "." arrives intact
    assert b"\r\n.dot line\r\n" in smtpd.messages[0].data


async def test_starttls_and_auth(
    server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", "s3cret")
    with RecordingSMTPServer(
        tls=server_tls, credentials=("bob", "s3cret"), require_starttls=True, unchecked=RAW
    ) as srv:
        url = f"smtp://bob@127.0.0.1:{srv.port}?starttls=required&cafile={ca_file}"
        t = SMTPTransport(parse_smtp_url(url))
        await t.send(env())
        await t.send(env())
        await t.close()
    assert [(m.tls, m.auth) for m in srv.messages] == [(True, "bob"), (True, "bob")]
    assert srv.auth_attempts == [("bob", "s3cret")]  # one login for the reused connection


async def test_wrong_password_is_an_auth_failure(
    server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", "wrong")
    with RecordingSMTPServer(tls=server_tls, credentials=("bob", "s3cret"), unchecked=RAW) as srv:
        t = SMTPTransport(parse_smtp_url(f"smtp://bob@127.0.0.1:{srv.port}?cafile={ca_file}"))
        with pytest.raises(AuthFailure) as exc:
            await t.send(env())
        assert exc.value.code == 535
    assert srv.messages == []


async def test_untrusted_certificate_is_refused(server_tls: ssl.SSLContext) -> None:
    with RecordingSMTPServer(tls=server_tls, unchecked=RAW) as srv:
        t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{srv.port}?starttls=required"))
        with pytest.raises(TLSFailure, match="certificate"):
            await t.send(env())
        # only by explicit choice
        t = SMTPTransport(
            parse_smtp_url(f"smtp://127.0.0.1:{srv.port}?starttls=required&verify=off")
        )
        await t.send(env())
        await t.close()
    assert len(srv.messages) == 1 and srv.messages[0].tls


async def test_required_starttls_not_offered_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILSPOOL_SMTP_PASSWORD", "s3cret")

    def respond(line: str) -> str:
        if line.upper().startswith("EHLO"):
            return "250-scripted\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING"
        return "250 OK"

    with LineServer(respond) as srv:
        url = f"smtp://bob@127.0.0.1:{srv.port}?starttls=required"
        t = SMTPTransport(parse_smtp_url(url))
        with pytest.raises(TLSFailure, match="does not offer STARTTLS"):
            await t.send(env())
    assert srv.lines[0].upper().startswith("EHLO")
    assert not any(line.upper().startswith(("AUTH", "MAIL", "RCPT", "DATA")) for line in srv.lines)
    assert not any("s3cret" in line for line in srv.lines)


async def test_no_credentials_over_plaintext_to_a_remote_host_even_if_offered() -> None:
    # a loopback server stands in for a remote one: only the URL's host decides the policy,
    # so refuse in the session layer when TLS did not happen for a non-loopback name
    from mailspool.errors import ConfigError

    with pytest.raises(ConfigError, match="without TLS"):
        parse_smtp_url("smtp://bob:pw@relay.example.com:587?starttls=off")


async def test_pipelined_delivery_to_smtp_sink(smtp_sink: Callable[..., SMTPSink]) -> None:
    sink = smtp_sink()
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
    for _ in range(50):
        await t.send(env())
    await t.close()
    assert t.opened == 1


async def test_partial_recipient_refusal(smtpd: RecordingSMTPServer) -> None:
    smtpd.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{smtpd.port}"))
    d = await t.send(env("good@example.com", "bad@example.com"))
    await t.close()
    assert d.code == 250
    assert set(d.refused) == {"bad@example.com"} and "550" in d.refused["bad@example.com"]
    assert smtpd.messages[0].recipients == ["good@example.com"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_all_recipients_refused_raises_with_each_reply(
    smtp_sink: Callable[..., SMTPSink], pipelining: bool
) -> None:
    sink = smtp_sink("-f", "rcpt", *([] if pipelining else ["-p"]))
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
    with pytest.raises(ReplyError) as exc:
        await t.send(env("x@example.com", "y@example.com"))
    assert exc.value.stage == "rcpt" and exc.value.code is not None and exc.value.code >= 500
    assert set(exc.value.refused) == {"x@example.com", "y@example.com"}


@pytest.mark.parametrize("pipelining", [True, False])
async def test_begin_is_told_once_mail_from_is_written(
    smtp_sink: Callable[..., SMTPSink], pipelining: bool
) -> None:
    """``Envelope.begin`` marks where the relay may take the message: after the
    connection and ``ready`` (the rate-limit slot), once MAIL FROM is out; a reused
    serial session's RSET comes before it."""
    sink = smtp_sink(*([] if pipelining else ["-p"]))
    told: list[str] = []

    async def ready() -> None:
        told.append("ready")

    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
    envelope = Envelope(
        "a@example.com", ("b@example.com",), MSG, on_begin=lambda: told.append("begin")
    )
    for _ in range(3):
        await t.send(envelope, ready)
    await t.close()
    assert told == ["ready", "begin"] * 3 and t.opened == 1


async def test_begin_is_not_told_when_no_transaction_starts() -> None:
    told: list[str] = []
    envelope = Envelope(
        "a@example.com", ("b@example.com",), MSG, on_begin=lambda: told.append("begin")
    )
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}"))
    with pytest.raises(ConnectError):
        await t.send(envelope)
    with LineServer(greeting=None) as srv:
        t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{srv.port}", connect_timeout=0.3))
        with pytest.raises(SMTPTimeout):
            await t.send(envelope)
    assert told == []


@pytest.mark.parametrize(
    ("options", "stage", "code"),
    [
        (("-r", "mail"), "mail", 4),
        (("-f", "data"), "data", 5),
        (("-r", "."), "dot", 4),
        (("-f", "."), "dot", 5),
    ],
)
async def test_error_replies_carry_stage_and_code(
    smtp_sink: Callable[..., SMTPSink], options: tuple[str, str], stage: str, code: int
) -> None:
    sink = smtp_sink(*options)
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
    with pytest.raises(ReplyError) as exc:
        await t.send(env())
    assert exc.value.stage == stage
    assert exc.value.code is not None and exc.value.code // 100 == code
    # the failed session is not reused
    assert t.open_connections == 0


async def test_hang_up_after_final_dot_is_a_connection_error_at_dot(
    smtp_sink: Callable[..., SMTPSink],
) -> None:
    sink = smtp_sink("-q", ".")
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
    with pytest.raises(ConnectError) as exc:
        await t.send(env())
    assert exc.value.stage == "dot"


async def test_connection_refused() -> None:
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}"))
    with pytest.raises(ConnectError) as exc:
        await t.send(env())
    assert exc.value.stage == "connect"


async def test_server_that_never_greets_times_out() -> None:
    with LineServer(greeting=None) as srv:
        settings = parse_smtp_url(f"smtp://127.0.0.1:{srv.port}", connect_timeout=0.3)
        t = SMTPTransport(settings)
        with pytest.raises(SMTPTimeout) as exc:
            await t.send(env())
    assert exc.value.stage == "greeting"


async def test_slow_final_reply_times_out_at_dot(smtp_sink: Callable[..., SMTPSink]) -> None:
    sink = smtp_sink("-W", ".:3")
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}", data_timeout=0.3))
    with pytest.raises(SMTPTimeout) as exc:
        await t.send(env())
    assert exc.value.stage == "dot"


# -- raw servers, on each event loop ----------------------------------------------------------

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop  # what the CLI runs on: it differs at STARTTLS

Body = Callable[[], Coroutine[Any, Any, None]]
SAFETY = 60  # seconds: only there to turn a hang into a failure, never reached when it works


@pytest.fixture(params=list(LOOPS))
def on_loop(request: pytest.FixtureRequest) -> Callable[[Body], None]:
    """Runs an async test body on a fresh event loop of each kind mailspool may run on."""

    def run(body: Body) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.run(asyncio.wait_for(body(), SAFETY))

    return run


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on a free loopback port in the test's own loop; yields the port.
    The connection is aborted when the handler returns."""
    tasks: set[asyncio.Task[Any]] = set()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports close their sockets


async def commands(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while line := await reader.readline():
        yield line.rstrip(b"\r\n").upper()


async def read_message(reader: asyncio.StreamReader) -> None:
    while await reader.readline() not in (b".\r\n", b""):
        pass


EHLO = b"250-raw\r\n250-SIZE 100000000\r\n250 PIPELINING\r\n"
EHLO_SERIAL = b"250-raw\r\n250 SIZE 100000000\r\n"


# -- a server that stops reading the message ----------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_server_that_stops_reading_the_message_times_out_at_data(
    on_loop: Callable[[Body], None], pipelining: bool
) -> None:
    async def stops_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw ESMTP\r\n")
        async for cmd in commands(reader):
            if cmd.startswith(b"EHLO"):
                writer.write(EHLO if pipelining else EHLO_SERIAL)
            elif cmd == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await asyncio.Event().wait()  # never reads again
            else:
                writer.write(b"250 OK\r\n")

    big = MSG + (b"y" * 78 + b"\r\n") * 200_000  # 16 MB: far more than socket buffers hold
    errors: list[SMTPTimeout] = []

    async def body() -> None:
        async with raw_server(stops_reading) as port:
            t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", data_timeout=0.5))
            with pytest.raises(SMTPTimeout) as exc:
                await t.send(Envelope("a@example.com", ("b@example.com",), big))
            assert t.open_connections == 0
            errors.append(exc.value)

    on_loop(body)
    # the final dot never left: not ambiguous, just retried
    assert errors[0].stage == "data"
    verdict = classify(errors[0])
    assert (verdict.action, verdict.ambiguous, verdict.kind) == (Action.RETRY, False, "timeout")


# -- a reply, then a hang-up, in the middle of a pipelined batch --------------------------------


@pytest.mark.parametrize("command", ["mail", "rcpt"])
def test_421_then_hang_up_mid_pipeline_is_reported_as_the_421(
    on_loop: Callable[[Body], None], smtp_sink: Callable[..., SMTPSink], command: str
) -> None:
    sink = smtp_sink("-Q", command)  # answers 421 and disconnects

    async def body() -> None:
        t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{sink.port}"))
        with pytest.raises(ReplyError) as exc:
            await t.send(env("x@example.com", "y@example.com"))
        assert (exc.value.code, exc.value.stage) == (421, command)
        assert classify(exc.value).action is Action.PAUSE

    on_loop(body)


X, Y = "x@example.com", "y@example.com"


def pipelining_server(answers: dict[str, str]) -> LineServer:
    """Answers each command by its verb, RCPT by its address; the batch arrives at once,
    so a "<close>" hangs up with the rest of it unanswered."""

    def respond(line: str) -> str:
        if line.upper().startswith("EHLO"):
            return "250-scripted\r\n250 PIPELINING"
        verb = line.partition(" ")[0].upper()
        rcpt = line.partition("<")[2].rstrip(">") if verb == "RCPT" else ""
        return answers.get(rcpt) or answers.get(verb) or "250 OK"

    return LineServer(respond)


@pytest.mark.parametrize(
    ("answers", "code", "stage", "action"),
    [
        # the server says why it hangs up: pause the relay
        ({"MAIL": "421 4.3.2 closing", "RCPT": "<close>"}, 421, "mail", "pause"),
        ({X: "550 5.1.1 no", Y: "421 4.3.2 closing", "DATA": "<close>"}, 421, "rcpt", "pause"),
        # a refused MAIL decides the attempt, hang-up or not
        ({"MAIL": "550 5.7.1 go away", "RCPT": "<close>"}, 550, "mail", "dead"),
        # every recipient refused: as if DATA had been answered (the 4xx is the hopeful one)
        ({X: "450 4.2.0 busy", Y: "550 5.1.1 no", "DATA": "<close>"}, 450, "rcpt", "retry"),
        # one refused recipient among several decides nothing: the hang-up is the failure
        ({X: "550 5.1.1 no", Y: "<close>"}, None, "mail", "retry"),
    ],
)
def test_reply_before_a_hang_up_mid_pipeline(
    on_loop: Callable[[Body], None],
    answers: dict[str, str],
    code: int | None,
    stage: str,
    action: str,
) -> None:
    async def body() -> None:
        with pipelining_server(answers) as srv:
            t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{srv.port}"))
            with pytest.raises(ReplyError if code else ConnectError) as exc:
                await t.send(env(X, Y))
        assert isinstance(exc.value, ConnectError | ReplyError)
        assert (exc.value.code, exc.value.stage) == (code, stage)
        assert classify(exc.value).action.value == action

    on_loop(body)


def test_421_to_rset_on_a_reused_serial_session_is_not_lost(
    on_loop: Callable[[Body], None],
) -> None:
    def respond(line: str) -> str:
        if line.upper() == "RSET":
            return "421 4.3.2 shutting down"
        if line.upper().startswith("EHLO"):
            return "250 scripted"  # no PIPELINING: one command at a time
        return "354 go ahead" if line.upper() == "DATA" else "250 OK"

    async def body() -> None:
        with LineServer(respond) as srv:
            t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{srv.port}"))
            await t.send(env())
            with pytest.raises(ReplyError) as exc:
                await t.send(env())
        assert (exc.value.code, exc.value.stage) == (421, "rset")
        assert classify(exc.value).action is Action.PAUSE

    on_loop(body)


# -- STARTTLS ---------------------------------------------------------------------------------

EHLO_TLS = b"250-raw\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
EHLO_AFTER_TLS = b"250-raw-tls\r\n250-X-AFTER-TLS\r\n250 PIPELINING\r\n"


@pytest.mark.parametrize(
    "injected",
    [b"250 injected\r\n", b"250-injected\r\n250-AUTH PLAIN\r\n", b"250 injected"],
    ids=["whole-reply", "continuation-lines", "partial-line"],
)
def test_plaintext_sent_with_the_starttls_reply_is_never_read_as_a_reply(
    on_loop: Callable[[Body], None], server_tls: ssl.SSLContext, ca_file: Path, injected: bytes
) -> None:
    async def injects(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw ESMTP\r\n")
        tls = False
        async for cmd in commands(reader):
            if cmd.startswith(b"EHLO"):
                writer.write(EHLO_AFTER_TLS if tls else EHLO_TLS)
            elif cmd == b"STARTTLS":
                writer.write(b"220 ready\r\n" + injected)  # one write: one segment
                await writer.start_tls(server_tls)
                tls = True
            elif cmd == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await read_message(reader)
                writer.write(b"250 2.0.0 queued after TLS\r\n")
            elif cmd == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 OK\r\n")

    async def body() -> None:
        async with raw_server(injects) as port:
            url = f"smtp://127.0.0.1:{port}?starttls=required&cafile={ca_file}"
            settings = parse_smtp_url(url)
            session = SMTPSession(settings, settings.tls_context())
            await session.connect()
            # the extensions are those of the EHLO after the handshake, and nothing else
            assert session.encrypted
            assert session.extensions == {"x-after-tls": "", "pipelining": ""}
            assert session.auth_methods == []
            delivery = await session.send("a@example.com", ("b@example.com",), MSG)
            assert delivery.text == "2.0.0 queued after TLS"
            await session.quit()

    on_loop(body)


def starttls_fault(fault: str) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw ESMTP\r\n")
        async for cmd in commands(reader):
            if cmd.startswith(b"EHLO"):
                writer.write(EHLO_TLS)
            elif cmd != b"STARTTLS":
                writer.write(b"250 OK\r\n")
            else:
                break
        # in the same segment as the 220 for "garbage"
        writer.write(b"220 ready\r\n" + (b"not an SMTP reply\r\n" if fault == "garbage" else b""))
        await writer.drain()
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if fault == "silence":
            await reader.read()  # the ClientHello, unanswered, until the client gives up
        # returning closes the connection: EOF, or RST with SO_LINGER 0

    return handler


@pytest.mark.parametrize("fault", ["close", "reset", "garbage", "silence"])
def test_network_failure_during_the_starttls_handshake_is_a_tls_failure(
    on_loop: Callable[[Body], None], fault: str
) -> None:
    async def body() -> None:
        async with raw_server(starttls_fault(fault)) as port:
            url = f"smtp://127.0.0.1:{port}?starttls=required&verify=off"
            t = SMTPTransport(parse_smtp_url(url, connect_timeout=0.5))
            with pytest.raises(TLSFailure) as exc:
                await t.send(env())
        assert exc.value.stage == "starttls"
        verdict = classify(exc.value)
        assert (verdict.action, verdict.kind) == (Action.PAUSE, "tls")

    on_loop(body)


# -- the pool's open connections ----------------------------------------------------------------


def test_open_connections_counts_sessions_in_use_and_idle(on_loop: Callable[[Body], None]) -> None:
    async def body() -> None:
        in_flight = asyncio.Event()
        release = asyncio.Event()
        dots = 0

        async def holds_final_reply(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal dots
            writer.write(b"220 raw ESMTP\r\n")
            async for cmd in commands(reader):
                if cmd.startswith(b"EHLO"):
                    writer.write(EHLO)
                elif cmd == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await read_message(reader)
                    dots += 1
                    if dots == 2:
                        in_flight.set()
                    await release.wait()
                    writer.write(b"250 2.0.0 queued\r\n")
                elif cmd == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                else:
                    writer.write(b"250 OK\r\n")

        async with raw_server(holds_final_reply) as port:
            t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}"))
            sends = asyncio.gather(t.send(env()), t.send(env()))
            await in_flight.wait()
            assert t.open_connections == 2  # both in use, none idle
            release.set()
            await sends
            assert t.open_connections == 2  # both idle
            await t.close()
            assert t.open_connections == 0
        assert t.opened == 2

    on_loop(body)


def test_session_with_an_unsolicited_reply_is_not_reused(on_loop: Callable[[Body], None]) -> None:
    async def body() -> None:
        async def says_421_when_idle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(b"220 raw ESMTP\r\n")
            async for cmd in commands(reader):
                if cmd.startswith(b"EHLO"):
                    writer.write(EHLO)
                elif cmd == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await read_message(reader)
                    # with the final reply, and the connection left open
                    writer.write(b"250 2.0.0 queued\r\n421 4.4.2 idle too long\r\n")
                else:
                    writer.write(b"250 OK\r\n")

        async with raw_server(says_421_when_idle) as port:
            t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}"))
            first = await t.send(env())
            # the 421 would answer the next batch's RSET and shift every reply after it
            second = await t.send(env())
            await t.close()
        assert (first.code, second.code) == (250, 250)
        assert t.opened == 2

    on_loop(body)


# -- a pool per provider (shaping) --------------------------------------------------------------


async def test_each_pool_has_its_own_sessions_and_its_own_messages_per_connection() -> None:
    with RecordingSMTPServer(unchecked="bare messages: the pools are under test") as server:
        t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{server.port}"))
        google = Envelope("a@example.com", ("b@example.com",), MSG, "g", pool="google",
                          max_messages=3)  # fmt: skip
        other = Envelope("a@example.com", ("b@example.com",), MSG, "o")
        for _ in range(7):
            await t.send(google)
            await t.send(other)
        # google's connections carry 3 messages each (3 + 3 + 1); the other pool's one
        # connection carries all of its 7 (the URL's max_messages is higher)
        assert t.opened == 4
        assert sorted(len(pool) for pool in t._idle.values()) == [1, 1]
        assert t.open_connections == 2
        await t.close()
    assert len(server.messages) == 14
