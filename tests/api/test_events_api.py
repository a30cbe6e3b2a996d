"""Job events reach the user's systems both ways: ``mailspool serve --webhook`` posts
each one signed (verified with the Standard Webhooks reference library), and ``GET
/v1/events?after=`` returns the same events, with the same ids, to pollers."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from mailspool.testing import RecordingSMTPServer
from mailspool.testing.webhooks import WebhookReceiver
from tests.support.api import ApiServer, delivered_to, message, wait_final
from tests.support.returned import dsn, feed

SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'queue.db'}"


def poll(c: httpx.Client, after: str | None = None, **params: Any) -> dict[str, Any]:
    query = {k: v for k, v in ({"after": after} | params).items() if v is not None}
    r = c.get("/v1/events", params=query)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def until(cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_webhooks_and_pollers_get_the_same_signed_events(
    tmp_path: Path, queue_url: str, smtpd: RecordingSMTPServer
) -> None:
    smtpd.handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 no such user"
    with WebhookReceiver() as rx:
        srv = ApiServer(
            tmp_path,
            "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
            "--webhook", rx.url,
            queue=queue_url,
            env={"MAILSPOOL_WEBHOOK_SECRET": SECRET},
        )  # fmt: skip
        try:
            with srv.client() as c:
                ids = []
                for to in ("ann@example.com", "bob@example.com", "nobody@example.com"):
                    r = c.post("/v1/messages", json=message(to, campaign="june"))
                    assert r.status_code == 202, r.text
                    ids.append(r.json()["id"])
                for jid in ids:
                    wait_final(c, jid)
                until(lambda: rx.count >= 3)
                page = poll(c)
                assert {e["data"]["job_id"] for e in page["events"]} == set(ids)
                by_job = {e["data"]["job_id"]: e for e in page["events"]}
                assert by_job[ids[0]]["type"] == "sent" and by_job[ids[2]]["type"] == "dead"
                dead = by_job[ids[2]]["data"]
                assert dead["recipient"] == "nobody@example.com"
                assert dead["reason"] == "rejected_permanent" and "5.1.1" in dead["reply"]
                # page by page with next, and nothing after the last
                first = poll(c, limit=2)
                second = poll(c, first["next"], limit=2)
                paged = first["events"] + second["events"]
                assert [e["id"] for e in paged] == [e["id"] for e in page["events"]]
                assert poll(c, page["next"]) == {"events": [], "next": page["next"]}
                only = poll(c, type="dead")
                assert [e["data"]["job_id"] for e in only["events"]] == [ids[2]]
                assert only["next"] == page["next"]  # past the events it skipped too
                assert poll(c, campaign="other")["events"] == []
                # a bounce handled later is an event too, posted as well
                (ann,) = delivered_to(smtpd, "ann@example.com")
                feed(queue_url, dsn("ann@example.com", str(ann.message["Message-ID"])))
                until(lambda: rx.count >= 4)
                [bounced] = poll(c, page["next"])["events"]
                assert bounced["type"] == "bounced" and bounced["data"]["job_id"] == ids[0]
                assert bounced["data"]["status"] == "5.1.1" and bounced["data"]["permanent"]
                page = poll(c)
                bad = c.get("/v1/events", params={"after": "x'; DROP"})
                assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "after"
                assert c.get("/v1/events", params={"type": "opened"}).status_code == 422
            with srv.client(token="wrong-token-0123456789abcdef") as other:
                assert other.get("/v1/events").status_code == 401
        finally:
            srv.stop()
    hooks = {
        r.headers["webhook-id"]: Webhook(SECRET).verify(r.body, r.headers) for r in rx.requests
    }
    assert set(hooks) == {e["id"] for e in page["events"]}  # the same ids both ways
    for e in page["events"]:
        assert hooks[e["id"]] == {k: e[k] for k in ("type", "timestamp", "data")}
