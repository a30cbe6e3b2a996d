"""The API shows the returned mail recorded on the jobs: ``GET /v1/messages/{id}`` the
message's latest bounce or complaint (``last_return``, null when none), ``GET
/v1/campaigns/{id}`` the campaign's bounced, soft-bounced and complained counts. The
remote server's diagnostic is untrusted: it comes out cleaned, and JSON-escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.api import ApiServer, delivered_to, message, wait_final
from tests.support.returned import HOSTILE, arf, dsn, feed


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'queue.db'}"


def test_messages_and_campaigns_show_returned_mail(
    tmp_path: Path, queue_url: str, smtpd: RecordingSMTPServer
) -> None:
    srv = ApiServer(tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", queue=queue_url)
    try:
        with srv.client() as c:
            ids = {}
            for name in ("ann", "bob", "cat"):
                r = c.post("/v1/messages", json=message(f"{name}@example.com", campaign="june"))
                assert r.status_code == 202, r.text
                ids[name] = r.json()["id"]
            for jid in ids.values():
                assert wait_final(c, jid)["state"] == "sent"
            quiet = c.get(f"/v1/messages/{ids['cat']}").json()
            assert quiet["last_return"] is None
            counts = c.get("/v1/campaigns/june").json()["returns"]
            assert counts == {"bounced": 0, "soft_bounced": 0, "complained": 0}

            def mid(name: str) -> str:
                (m,) = delivered_to(smtpd, f"{name}@example.com")
                return str(m.message["Message-ID"])

            feed(
                queue_url,
                dsn("ann@example.com", mid("ann"), text=HOSTILE),
                dsn("bob@example.com", mid("bob"), status="4.2.2", text="mailbox full"),
                arf("bob@example.com", mid("bob")),
            )

            r = c.get(f"/v1/messages/{ids['ann']}")
            assert r.status_code == 200, r.text
            # no control character in the body, escaped or not: it was cleaned
            assert not any(s in r.text for s in ("\x1b", "\x07", "\\u001b", "\\u0007")), r.text
            body = r.json()
            assert body["state"] == "sent" and body["message_id"] == mid("ann")
            last = body["last_return"]
            assert (last["kind"], last["recipient"], last["status"], last["permanent"]) == (
                "bounced", "ann@example.com", "5.1.1", True
            )  # fmt: skip
            assert "mailbox unknown" in last["diagnostic"]
            assert last["received_at"].endswith("+00:00")
            # bob: a soft bounce, then a complaint; the complaint is the latest
            bob = c.get(f"/v1/messages/{ids['bob']}").json()["last_return"]
            assert bob["kind"] == "complained" and bob["permanent"] is True
            assert c.get(f"/v1/messages/{ids['cat']}").json()["last_return"] is None

            june = c.get("/v1/campaigns/june").json()
            assert june["returns"] == {"bounced": 1, "soft_bounced": 1, "complained": 1}
            # the counts of the run stay true: every message is still sent
            assert june["counts"]["sent"] == 3 and june["total"] == 3
    finally:
        srv.stop()


def test_a_diagnostic_is_json_escaped(tmp_path: Path, smtpd: RecordingSMTPServer) -> None:
    """Quotes, backslashes and angle brackets a server may write come back as text."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    srv = ApiServer(tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", queue=url)
    tricky = 'user "x" \\ unknown </script><b>'
    try:
        with srv.client() as c:
            jid = c.post("/v1/messages", json=message("dan@example.com")).json()["id"]
            assert wait_final(c, jid)["state"] == "sent"
            (m,) = delivered_to(smtpd, "dan@example.com")
            feed(url, dsn("dan@example.com", str(m.message["Message-ID"]), text=tricky))
            r = c.get(f"/v1/messages/{jid}")
            assert r.headers["content-type"].startswith("application/json")
            assert tricky in json.loads(r.text)["last_return"]["diagnostic"]
            assert '\\"x\\"' in r.text and "\\\\" in r.text
    finally:
        srv.stop()
