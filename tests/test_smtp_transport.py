"""The SMTP transport against real servers: aiosmtpd (STARTTLS, AUTH, no PIPELINING),
Postfix's smtp-sink (PIPELINING, fault injection) and a scripted line server."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.errors import AuthFailure, ConnectError, ReplyError, SMTPTimeout, TLSFailure
from mailspool.testing import LineServer, RecordingSMTPServer, SMTPSink, free_port
from mailspool.transport import Envelope, SMTPTransport, parse_smtp_url

MSG = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\n.dot line\r\nbody\r\n"


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
        tls=server_tls, credentials=("bob", "s3cret"), require_starttls=True
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
    with RecordingSMTPServer(tls=server_tls, credentials=("bob", "s3cret")) as srv:
        t = SMTPTransport(parse_smtp_url(f"smtp://bob@127.0.0.1:{srv.port}?cafile={ca_file}"))
        with pytest.raises(AuthFailure) as exc:
            await t.send(env())
        assert exc.value.code == 535
    assert srv.messages == []


async def test_untrusted_certificate_is_refused(server_tls: ssl.SSLContext) -> None:
    with RecordingSMTPServer(tls=server_tls) as srv:
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
