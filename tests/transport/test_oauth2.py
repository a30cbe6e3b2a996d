"""OAuth2 for SMTP (``?auth=xoauth2`` / ``?auth=oauthbearer``) against the recording
server checking each token with a token endpoint on loopback: each token source, a token
that expires or is revoked mid-run and is replaced without a failed message, and the
failures, which never show a token or a secret."""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

import pytest

from mailspool.errors import AuthFailure, ConfigError
from mailspool.testing import RecordingSMTPServer
from mailspool.testing.oauth2 import TokenIssuer
from mailspool.transport import Envelope, SMTPTransport, parse_smtp_url

MSG = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\n\r\nbody\r\n"
RAW = "a test of OAuth2 login, which sends a fixed raw message"
pytestmark = pytest.mark.unchecked_mail(RAW)
USER = "sender@example.com"
ENV = "MAILSPOOL_SMTP_OAUTH2_"


def env() -> Envelope:
    return Envelope("a@example.com", ("b@example.com",), MSG)


def refresh_env(monkeypatch: pytest.MonkeyPatch, issuer: TokenIssuer) -> None:
    monkeypatch.setenv(ENV + "TOKEN_URL", issuer.url)
    monkeypatch.setenv(ENV + "CLIENT_ID", issuer.client_id)
    monkeypatch.setenv(ENV + "CLIENT_SECRET", issuer.client_secret)
    monkeypatch.setenv(ENV + "REFRESH_TOKEN", issuer.refresh_token)


def relay(srv: RecordingSMTPServer, ca_file: Path, mechanism: str, extra: str = "") -> str:
    return (
        f"smtp://{USER.replace('@', '%40')}@127.0.0.1:{srv.port}"
        f"?starttls=required&cafile={ca_file}&auth={mechanism}{extra}"
    )


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
async def test_a_refresh_token_gets_one_access_token_for_every_connection(
    mechanism: str, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TokenIssuer(user=USER) as issuer:
        refresh_env(monkeypatch, issuer)
        with RecordingSMTPServer(tls=server_tls, oauth2=issuer.valid, unchecked=RAW) as srv:
            settings = parse_smtp_url(relay(srv, ca_file, mechanism, "&max_messages=1"))
            assert (
                settings.redacted.endswith(f"?auth={mechanism}") and "***" not in settings.redacted
            )
            t = SMTPTransport(settings)
            for _ in range(3):
                assert (await t.send(env())).code == 250
            await t.close()
        assert [(m.tls, m.auth) for m in srv.messages] == [(True, USER)] * 3
        assert t.opened == 3 and issuer.requests == 1 and issuer.refused == []


async def test_a_token_that_expires_early_is_replaced_and_the_message_goes(
    server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the endpoint says an hour; the server holds each token valid for a moment only
    with TokenIssuer(user=USER, lifetime=0.3, said_lifetime=3600) as issuer:
        refresh_env(monkeypatch, issuer)
        with RecordingSMTPServer(tls=server_tls, oauth2=issuer.valid, unchecked=RAW) as srv:
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "xoauth2", "&max_messages=1")))
            assert (await t.send(env())).code == 250
            issuer.revoke()
            assert (await t.send(env())).code == 250  # refused once, refreshed, sent
            await t.close()
        assert len(srv.messages) == 2 and issuer.requests == 2 and len(issuer.refused) == 1


async def test_a_short_lived_token_is_refreshed_before_it_expires(
    server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # expires_in under the minute's margin: each new connection asks for a new token
    with TokenIssuer(user=USER, lifetime=30) as issuer:
        refresh_env(monkeypatch, issuer)
        with RecordingSMTPServer(tls=server_tls, oauth2=issuer.valid, unchecked=RAW) as srv:
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "oauthbearer", "&max_messages=1")))
            for _ in range(2):
                await t.send(env())
            await t.close()
        assert issuer.requests == 2 and issuer.refused == []


async def test_a_token_command_is_run_again_when_its_token_is_refused(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = tmp_path / "current"
    runs = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(
        f"import sys\nopen({str(runs)!r}, 'a').write('x')\nprint(open({str(current)!r}).read())\n"
    )
    monkeypatch.setenv(ENV + "TOKEN_COMMAND", f"{sys.executable} {script}")
    with TokenIssuer(user=USER) as issuer:
        current.write_text(issuer.issue())
        with RecordingSMTPServer(tls=server_tls, oauth2=issuer.valid, unchecked=RAW) as srv:
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "xoauth2", "&max_messages=1")))
            await t.send(env())
            await t.send(env())  # the command's token is reused while it works
            issuer.revoke()
            current.write_text(issuer.issue())  # what the command prints now
            await t.send(env())
            await t.close()
        assert len(srv.messages) == 3 and runs.read_text() == "xx"


async def test_a_token_file_is_read_for_each_connection(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    monkeypatch.setenv(ENV + "TOKEN_FILE", str(token_file))
    with TokenIssuer(user=USER) as issuer:
        token_file.write_text(issuer.issue() + "\n")
        with RecordingSMTPServer(tls=server_tls, oauth2=issuer.valid, unchecked=RAW) as srv:
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "xoauth2", "&max_messages=1")))
            await t.send(env())
            issuer.revoke()
            token_file.write_text(issuer.issue())  # another process refreshed it
            await t.send(env())
            await t.close()
        assert len(srv.messages) == 2 and issuer.refused == []


async def test_refusals_are_auth_failures_that_name_no_secret(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TokenIssuer(user=USER) as issuer:
        refresh_env(monkeypatch, issuer)
        with RecordingSMTPServer(
            tls=server_tls, oauth2=lambda user, token: False, unchecked=RAW
        ) as srv:
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "xoauth2")))
            with pytest.raises(AuthFailure) as refused:
                await t.send(env())
            assert refused.value.code == 535
            assert issuer.requests == 2  # a fresh token was tried once
            monkeypatch.setenv(ENV + "REFRESH_TOKEN", "revoked-refresh-token")
            t = SMTPTransport(parse_smtp_url(relay(srv, ca_file, "xoauth2")))
            with pytest.raises(AuthFailure, match="refused the refresh token: HTTP 400") as bad:
                await t.send(env())
        assert srv.messages == []
    for exc in (refused.value, bad.value):
        text = f"{exc} {exc!r}"
        assert "ya29." not in text and "refresh" not in text.replace("refresh token", "")
        assert issuer.client_secret not in text and "revoked-refresh-token" not in text


@pytest.mark.parametrize(
    ("url", "environment", "error"),
    [
        ("smtp://u@mail.example.com?auth=cram-md5", {ENV + "TOKEN_FILE": "t"}, "must be one of"),
        ("smtp://mail.example.com?auth=xoauth2", {ENV + "TOKEN_FILE": "t"}, "needs the user"),
        ("smtp://u:pw@mail.example.com?auth=xoauth2", {ENV + "TOKEN_FILE": "t"}, "not a password"),
        ("smtp://u@mail.example.com?auth=xoauth2", {}, "needs exactly one of"),
        (
            "smtp://u@mail.example.com?auth=xoauth2",
            {ENV + "TOKEN_FILE": "t", ENV + "TOKEN_COMMAND": "x"},
            "given: MAILSPOOL_SMTP_OAUTH2_TOKEN_COMMAND, MAILSPOOL_SMTP_OAUTH2_TOKEN_FILE",
        ),
        (
            "smtp://u@mail.example.com?auth=oauthbearer",
            {ENV + "TOKEN_URL": "http://login.example.com/token", ENV + "CLIENT_ID": "c",
             ENV + "REFRESH_TOKEN": "r"},
            "must be https://",
        ),
        (
            "smtp://u@mail.example.com?auth=oauthbearer",
            {ENV + "TOKEN_URL": "https://login.example.com/token"},
            "needs MAILSPOOL_SMTP_OAUTH2_CLIENT_ID",
        ),
        ("smtp://u@mx.example.com?auth=xoauth2&starttls=off", {ENV + "TOKEN_FILE": "t"}, "without"),
    ],
)  # fmt: skip
def test_misconfigurations_are_refused_at_start(
    url: str, environment: dict[str, str], error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(ENV)]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=error):
        parse_smtp_url(url)
