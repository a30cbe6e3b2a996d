"""``mailspool serve --return-path``: a posted message goes out with the VERP envelope
sender naming its job, From unchanged; the allowed sender domains still check From."""

from __future__ import annotations

from pathlib import Path

from mailspool.message.unsubscribe import Secrets
from mailspool.message.verp import ENV_SECRET, read_return_path
from mailspool.testing import RecordingSMTPServer
from tests.support.api import ApiServer, delivered_to, message, wait_final

SECRET = "return-path-secret-" + "s" * 30
BASE = "bounces@bounce.example.com"


def test_a_posted_message_goes_out_with_its_jobs_return_path(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    srv = ApiServer(
        tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--return-path", BASE,
        env={ENV_SECRET: SECRET},
    )  # fmt: skip
    try:
        with srv.client() as c:
            r = c.post("/v1/messages", json=message("carol@example.com"))
            assert r.status_code == 202, r.text
            jid = r.json()["id"]
            assert wait_final(c, jid)["state"] == "sent"
            # From is what the allowed domains check, not the envelope sender
            r = c.post("/v1/messages", json=message(**{"from": "x@elsewhere.example"}))
            assert r.status_code == 422, r.text
            assert "from" in r.text.lower()
    finally:
        srv.stop()
    (m,) = delivered_to(smtpd, "carol@example.com")
    assert m.sender.startswith("bounces+") and m.sender.endswith("@bounce.example.com")
    assert read_return_path(Secrets([SECRET]), m.sender, BASE) == jid
    assert m.message["From"] == "App <app@example.com>"
    assert SECRET not in srv.log()


def test_without_the_option_the_envelope_sender_is_from(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    srv = ApiServer(tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}")
    try:
        with srv.client() as c:
            jid = c.post("/v1/messages", json=message("dave@example.com")).json()["id"]
            assert wait_final(c, jid)["state"] == "sent"
    finally:
        srv.stop()
    (m,) = delivered_to(smtpd, "dave@example.com")
    assert m.sender == "app@example.com"
