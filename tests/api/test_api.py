"""``mailspool serve`` run as a user runs it (a subprocess on a free loopback port), with
workers in the server process delivering to a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from mailspool.api.auth import Tokens
from mailspool.api.service import RateSampler
from mailspool.api.templates import TemplateStore
from mailspool.config import Settings
from mailspool.errors import ConfigError
from mailspool.queue import MemoryQueue
from mailspool.testing import RecordingSMTPServer, free_port
from tests.support.api import TOKEN, ApiServer, delivered_to, message, wait_final
from tests.support.cli import Result
from tests.support.paths import ROOT
from tests.support.services import RabbitMQNamespace


@pytest.fixture(scope="module")
def smtpd_module() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, smtpd_module: RecordingSMTPServer
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("api")
    srv = ApiServer(
        tmp, "--smtp", f"smtp://127.0.0.1:{smtpd_module.port}", "--workers", "1",
        "--max-body", str(256 * 1024), "--retry-first", "1s",
    )  # fmt: skip
    yield srv
    assert srv.stop() == 0  # a graceful stop on SIGTERM exits 0, as a worker's does


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# -- access ----------------------------------------------------------------------------


def test_probes_and_openapi_need_no_token(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/readyz").json() == {"status": "ready"}
        doc = anon.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/v1/messages", "/v1/messages/{job_id}", "/v1/campaigns/{campaign}",
        "/v1/dead-letters/retry", "/v1/templates/{name}", "/healthz", "/readyz", "/metrics",
    } <= paths  # fmt: skip
    body = doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in body["schema"]["anyOf"]} == {
        "MessageIn",
        "BatchIn",
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_v1_and_metrics_need_a_valid_token(server: ApiServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, headers=headers) as c:
        for method, path in (
            ("POST", "/v1/messages"),
            ("GET", "/v1/messages/x"),
            ("GET", "/v1/campaigns/api"),
            ("POST", "/v1/dead-letters/retry"),
            ("PUT", "/v1/templates/t"),
            ("GET", "/metrics"),
        ):
            r = c.request(method, path, json=message())
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in r.text


def test_a_body_over_the_limit_is_413(api: httpx.Client) -> None:
    big = message(text="x" * 300_000)
    r = api.post("/v1/messages", json=big)
    assert r.status_code == 413
    assert "body over" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        data = json.dumps(big).encode()
        for i in range(0, len(data), 16384):
            yield data[i : i + 16384]

    r = api.post("/v1/messages", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # each counted with its route, as every answer is (and the OpenAPI document's too)
    assert api.get("/openapi.json").status_code == 200
    metrics = api.get("/metrics").text
    line = 'mailspool_api_requests_total{method="POST",route="/v1/messages",status="413"} 2.0'
    assert line in metrics
    assert 'route="/openapi.json",status="200"' in metrics


# -- messages --------------------------------------------------------------------------


def test_one_message_is_queued_and_sent(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    r = api.post("/v1/messages", json=message("one@example.com", cc=["c1@example.org"]))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    body = wait_final(api, job_id)
    assert body["state"] == "sent" and body["attempts"] == 1
    assert body["last_reply"].startswith("250")
    assert body["campaign"] == "api" and body["dead_reason"] is None
    assert body["created_at"].endswith("+00:00") and body["updated_at"] >= body["created_at"]
    assert body["message_id"] == f"<{job_id}@example.com>"
    (got,) = delivered_to(smtpd_module, "one@example.com")
    assert sorted(got.recipients) == ["c1@example.org", "one@example.com"]
    assert got.message["Subject"] == "Hello" and got.message["Message-ID"] == body["message_id"]


def test_send_at_holds_a_message_until_then_and_a_bad_one_is_422(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    start = time.time() + 1.5
    when = datetime.fromtimestamp(start, UTC).isoformat()
    r = api.post("/v1/messages", json=message("later@example.com", send_at=when))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    held = api.get(f"/v1/messages/{job_id}").json()
    assert held["state"] == "deferred" and held["attempts"] == 0
    body = wait_final(api, job_id)
    assert body["state"] == "sent" and body["attempts"] == 1 and time.time() >= start
    assert delivered_to(smtpd_module, "later@example.com")
    for bad, reason in (("soon", "not a date and time"), ("2999-01-01T00:00", "a year ahead")):
        r = api.post("/v1/messages", json=message("x@example.com", send_at=bad))
        assert r.status_code == 422, r.text
        (err,) = r.json()["errors"]
        assert err["field"] == "send_at" and reason in err["reason"]


def test_a_campaign_name_follows_the_command_lines_rule(
    api: httpx.Client, cli: Callable[..., Result]
) -> None:
    for name in ("a:b", ".hidden", "x" * 101):
        r = api.post("/v1/messages", json=message(campaign=name))
        assert r.status_code == 422, (name, r.text)
        assert r.json()["errors"][0]["field"] == "campaign"
        for action in ("pause", "resume", "cancel"):  # nor can campaign control name it
            r = api.post(f"/v1/campaigns/{name}/{action}")
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.campaign"
        res = cli("status", "--campaign", name)  # nor can any command name it
        assert res.returncode == 2 and "a campaign name is" in res.stderr
        res = cli("campaign", "pause", name)
        assert res.returncode == 2 and "a campaign name is" in res.stderr


def test_a_batch_with_a_bad_message_reports_each_and_queues_nothing(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    msgs = [
        message("ok-batch@example.com", campaign="batch-bad"),
        message("not an address", campaign="batch-bad"),
        message("x@example.com", subject="hi\r\nBcc: eve@example.net", campaign="batch-bad"),
        message("y@example.com", headers={"Received": "forged"}, campaign="batch-bad"),
    ]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "to"),
        (2, "subject"),
        (3, "headers.Received"),
    ]
    assert "injection" in errors[1]["reason"]
    assert api.get("/v1/campaigns/batch-bad").status_code == 404  # nothing queued
    assert not delivered_to(smtpd_module, "ok-batch@example.com")


def test_a_good_batch_is_queued_and_sent(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    msgs = [message(f"b{i}@example.com", campaign="batch-ok") for i in range(20)]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 202
    ids = r.json()["ids"]
    assert len(set(ids)) == 20
    assert all(wait_final(api, i)["state"] == "sent" for i in ids)
    c = api.get("/v1/campaigns/batch-ok").json()
    assert c["counts"] == {
        "queued": 0, "sending": 0, "sent": 20, "deferred": 0, "dead": 0, "suppressed": 0,
        "cancelled": 0,
    }  # fmt: skip
    assert c["state"] == "active"
    assert c["total"] == 20 and c["pending"] == 0 and c["eta_s"] == 0.0
    assert c["rate_per_s"] is None  # the first read has nothing to compare with
    assert api.get("/v1/campaigns/no-such-campaign").status_code == 404


def test_mail_to_a_known_provider_is_shaped_and_the_campaign_shows_it(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    # the shipped rules name gmail.com: the server's workers shape it and publish it
    msgs = [message(f"shaped{i}@gmail.com", campaign="shaped") for i in range(5)]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 202
    assert all(wait_final(api, i)["state"] == "sent" for i in r.json()["ids"])
    deadline = time.monotonic() + 15  # workers publish every 5 s
    google: dict[str, Any] = {}
    while time.monotonic() < deadline and google.get("sent", 0) < 5:
        shown = api.get("/v1/campaigns/shaped").json()["providers"]
        google = next((p for p in shown if p["name"] == "google"), {})
        time.sleep(0.5)
    assert google["sent"] >= 5 and google["throttled"] == 0
    assert (google["rate"], google["ceiling"], google["last_reply"]) == (None, None, "")


def test_a_batch_of_exactly_1000_is_accepted_and_each_sent_once(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    addresses = [f"thousand{i}@example.com" for i in range(1000)]
    msgs = [message(a, campaign="batch-1000") for a in addresses]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    assert len(ids) == len(set(ids)) == 1000
    assert api.get("/v1/campaigns/batch-1000").json()["total"] == 1000  # durable at the 202
    deadline = time.monotonic() + 90
    while (c := api.get("/v1/campaigns/batch-1000").json())["pending"]:
        assert time.monotonic() < deadline, c
        time.sleep(0.2)
    assert c["counts"]["sent"] == 1000
    got: dict[str, list[str]] = {}
    for m in smtpd_module.messages:
        for rcpt in m.recipients:
            if rcpt.startswith("thousand"):
                got.setdefault(rcpt, []).append(str(m.message["Message-ID"]))
    # the ids are in the order of the batch: message i went to address i, once
    assert got == {a: [f"<{job_id}@example.com>"] for a, job_id in zip(addresses, ids, strict=True)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (message(to=7), "to"),
        (message(unknown="x"), "unknown"),
        (message(template="welcome"), "from"),
        ({"to": "a@example.com", "variables": {"a": 1}}, "variables"),
        (message(**{"from": None}), "from"),
        (message(to=None), "to"),
        (message(campaign="spaces are not allowed"), "campaign"),
        ({"messages": []}, "messages"),
        ({"messages": [message()] * 1001}, "messages"),
        ({"messages": [message()], "extra": 1}, "extra"),
        ([message()], "body"),
    ],
)
def test_invalid_messages_get_field_level_errors(api: httpx.Client, body: Any, field: str) -> None:
    r = api.post("/v1/messages", json=body)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]


#: every route that takes a JSON body
BODY_ROUTES = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/dead-letters/retry"),
    ("PUT", "/v1/templates/t400"),
    ("POST", "/v1/suppressions"),
    ("DELETE", "/v1/suppressions"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_body_not_utf8_is_400_and_one_not_json_is_422_on_every_route(
    api: httpx.Client, method: str, path: str
) -> None:
    # a body that cannot be read as text is malformed (400); text that is not a valid
    # request, JSON or not, is 422 with the errors, as every other invalid field
    json_type = {"Content-Type": "application/json"}
    r = api.request(method, path, content=b'{"to": "caf\xe9"}', headers=json_type)
    assert (r.status_code, r.json()) == (400, {"detail": "the body is not UTF-8"})
    r = api.request(method, path, content=b"{nope", headers=json_type)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"index": None, "field": "body", "reason": "not valid JSON"}]


def test_the_openapi_document_and_api_md_give_the_same_statuses(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as anon:
        doc = anon.get("/openapi.json").json()
    for method, path in BODY_ROUTES:
        template = "/v1/templates/{name}" if path.startswith("/v1/templates/") else path
        responses = doc["paths"][template][method.lower()]["responses"]
        assert responses["400"]["description"] == "the body is not UTF-8", (method, path)
        assert "422" in responses and "415" in responses
    # a route without a body cannot send one that is not UTF-8 or not JSON
    assert not {"400", "415"} & set(doc["paths"]["/v1/messages/{job_id}"]["get"]["responses"])
    table = (ROOT / "docs" / "api.md").read_text(encoding="utf-8").split("## Errors", 1)[1]
    assert '| 400 | `{"detail": "the body is not UTF-8"}` |' in table
    assert "not valid JSON" in table.split("| 422 |", 1)[1].split("\n", 1)[0]


def test_idempotency_key_returns_the_same_job_and_sends_once(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    key = {"Idempotency-Key": "order-1234"}
    first = api.post("/v1/messages", json=message("idem@example.com"), headers=key).json()["id"]
    wait_final(api, first)
    again = api.post("/v1/messages", json=message("idem@example.com"), headers=key)
    assert again.status_code == 202 and again.json()["id"] == first
    other = api.post("/v1/messages", json=message("idem@example.com")).json()["id"]
    assert other != first  # without a key, each POST is a new message
    wait_final(api, other)
    assert len(delivered_to(smtpd_module, "idem@example.com")) == 2
    batch = {"messages": [message("i1@example.com"), message("i2@example.com")]}
    ids = api.post("/v1/messages", json=batch, headers={"Idempotency-Key": "b-1"}).json()["ids"]
    assert api.post("/v1/messages", json=batch, headers={"Idempotency-Key": "b-1"}).json() == {
        "ids": ids
    }
    r = api.post("/v1/messages", json=message(), headers={"Idempotency-Key": "has space"})
    assert r.status_code == 422


def test_unknown_message_is_404(api: httpx.Client) -> None:
    assert api.get("/v1/messages/0123456789abcdef").status_code == 404


# -- templates -------------------------------------------------------------------------

WELCOME = """From: News <news@example.com>
To: {{ name }} <{{ email }}>
Subject: Welcome, {{ name }}

Hello {{ name }}, your plan is {{ plan | upper }}.
"""


def test_templates_are_versioned_and_rendered(
    api: httpx.Client, smtpd_module: RecordingSMTPServer
) -> None:
    r = api.put("/v1/templates/welcome", json={"text": WELCOME})
    assert r.status_code == 201 and r.json()["version"] == 1
    assert api.put("/v1/templates/welcome", json={"text": WELCOME}).status_code == 200
    changed = WELCOME.replace("your plan", "the plan")
    r = api.put("/v1/templates/welcome", json={"text": changed})
    assert r.status_code == 201 and r.json()["version"] == 2
    got = api.get("/v1/templates/welcome").json()
    assert got["version"] == 2 and got["text"] == changed and got["html"] is None
    assert api.get("/v1/templates/nothing-here").status_code == 404

    variables = {"name": "Smith, John", "email": "john@example.com", "plan": "pro"}
    r = api.post("/v1/messages", json={"template": "welcome", "variables": variables})
    assert r.status_code == 202, r.text
    assert wait_final(api, r.json()["id"])["state"] == "sent"
    (m,) = delivered_to(smtpd_module, "john@example.com")
    assert m.recipients == ["john@example.com"]  # the comma in the name added nobody
    assert m.message["Subject"] == "Welcome, Smith, John"
    assert "the plan is PRO" in m.message.get_payload()

    r = api.post("/v1/messages", json={"template": "welcome", "variables": {"name": "x"}})
    assert r.status_code == 422
    assert "undefined" in r.json()["errors"][0]["reason"]
    r = api.post("/v1/messages", json={"template": "nope", "variables": {}})
    assert r.json()["errors"][0]["field"] == "template"


def test_templates_render_in_a_sandbox(api: httpx.Client) -> None:
    escape = WELCOME + "{{ name.__class__.__mro__[1].__subclasses__() }}\n"
    assert api.put("/v1/templates/evil", json={"text": escape}).status_code == 201
    variables = {"name": "x", "email": "x@example.com", "plan": "a"}
    r = api.post("/v1/messages", json={"template": "evil", "variables": variables})
    assert r.status_code == 422
    assert "unsafe" in r.json()["errors"][0]["reason"]


def test_a_template_that_renders_too_long_is_refused_while_the_server_answers(
    server: ApiServer, api: httpx.Client
) -> None:
    """Rendering runs on a thread, within the render's limits: the message gets a 422 for
    its field, and /healthz answers all the while."""
    slow = WELCOME + (
        "{% set s = 'x' * 10000000 %}"  # each `in` scans 10 MB: the loop would take minutes
        "{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}\n"
    )
    assert api.put("/v1/templates/slow", json={"text": slow}).status_code == 201
    variables = {"name": "x", "email": "x@example.com", "plan": "a"}
    message = {"template": "slow", "variables": variables}
    answered = 0
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=server.url, timeout=30) as probe,
    ):
        posted = pool.submit(api.post, "/v1/messages", json=message)
        while not posted.done():
            if probe.get("/healthz").status_code == 200 and not posted.done():
                answered += 1
        r = posted.result()
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert err["field"] == "text"
    assert err["reason"] == "template error: render limit exceeded: took longer than 1 s"
    assert answered > 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("From: a@example.com\nAttachment: /etc/passwd\n\nbody\n", "Attachment"),
        ("From: a@example.com\nSubject: {{ oops\n\nbody\n", "line 2"),
        ("Message-ID: <x@y>\n\nbody\n", "set by mailspool"),
    ],
)
def test_bad_templates_are_refused(api: httpx.Client, text: str, reason: str) -> None:
    r = api.put("/v1/templates/bad", json={"text": text})
    assert r.status_code == 422
    assert reason in r.json()["errors"][0]["reason"]
    assert api.put("/v1/templates/bad name", json={"text": "x"}).status_code in (404, 422)


async def test_template_versions_are_shared_between_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two stores on one queue stand for two API processes: neither overwrites the other,
    and each sees the other's newer version once it looks again."""
    monkeypatch.setattr("mailspool.api.templates.RECHECK_S", 0.0)
    queue = MemoryQueue()
    a, b = TemplateStore(queue, Settings()), TemplateStore(queue, Settings())
    v1, created = await a.put("t", "Subject: one\n\nbody\n", None)
    assert (v1.version, created) == (1, True)
    v2, _ = await b.put("t", "Subject: two\n\nbody\n", None)
    assert v2.version == 2
    latest = await a.get("t")
    assert latest is not None and latest.version == 2 and "two" in latest.text
    assert await a.get("missing") is None


# -- dead letters, campaigns, metrics --------------------------------------------------


def test_dead_letters_can_be_retried(api: httpx.Client, smtpd_module: RecordingSMTPServer) -> None:
    smtpd_module.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
    job_id = api.post("/v1/messages", json=message("gone@example.com", campaign="dlq")).json()["id"]
    body = wait_final(api, job_id)
    assert body["state"] == "dead" and body["dead_reason"] == "rejected_permanent"
    assert body["last_reply"].startswith("550")
    bad = api.post("/v1/dead-letters/retry", json={"reason": "no-such-reason"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reason"
    bad = api.post("/v1/dead-letters/retry", json={"since": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "since"
    none = api.post("/v1/dead-letters/retry", json={"campaign": "dlq", "reason": "expired"})
    assert none.json() == {"retry": 0}
    del smtpd_module.handler.rcpt_replies["gone@example.com"]
    r = api.post(
        "/v1/dead-letters/retry",
        json={"campaign": "dlq", "reason": "rejected_permanent", "since": "1h"},
    )
    assert r.json() == {"retry": 1}
    assert wait_final(api, job_id)["state"] == "sent"
    assert len(delivered_to(smtpd_module, "gone@example.com")) == 1


def test_campaign_shows_the_rate_and_eta_while_it_is_delivered(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    """The workers send at most 50/s, so 250 messages take about 5 s; two reads 2 s apart
    in the middle of it see that rate and the time the rest will take at it."""
    srv = ApiServer(
        tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--workers", "1",
        "--rate", "50/s",
    )  # fmt: skip
    try:
        with srv.client() as c:
            msgs = [message(f"paced{i}@example.com", campaign="paced") for i in range(250)]
            assert c.post("/v1/messages", json={"messages": msgs}).status_code == 202
            t1 = time.monotonic()
            first = c.get("/v1/campaigns/paced").json()
            assert first["pending"] > 0
            assert first["rate_per_s"] is None and first["eta_s"] is None  # nothing to compare
            time.sleep(2)
            t2 = time.monotonic()
            second = c.get("/v1/campaigns/paced").json()
            assert second["pending"] > 0, "delivered before the second read: not paced"
            done = second["counts"]["sent"] - first["counts"]["sent"]
            rate, eta = second["rate_per_s"], second["eta_s"]
            assert rate is not None and eta is not None
            assert rate == pytest.approx(done / (t2 - t1), rel=0.15)  # as the client saw it
            assert 20 <= rate <= 55  # the limit: no burst above 50/s
            assert eta == pytest.approx(second["pending"] / rate, abs=0.1)
            deadline = time.monotonic() + 60
            while (last := c.get("/v1/campaigns/paced").json())["pending"]:
                assert time.monotonic() < deadline, last
                time.sleep(0.2)
            assert last["counts"]["sent"] == 250 and last["eta_s"] == 0.0
    finally:
        srv.stop()


def test_metrics_count_outcomes_with_fixed_labels(api: httpx.Client) -> None:
    job_id = api.post("/v1/messages", json=message("metrics@example.com")).json()["id"]
    wait_final(api, job_id)
    api.get(f"/v1/messages/{job_id}")
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['mailspool_messages_total{outcome="sent"}'] >= 1
    assert samples['mailspool_smtp_replies_total{class="2xx"}'] >= 1
    assert samples["mailspool_queue_up"] == 1
    assert samples['mailspool_queue_depth{state="sent"}'] >= 1
    assert samples['mailspool_send_duration_seconds_count{outcome="sent"}'] >= 1
    assert samples["mailspool_api_messages_accepted_total"] >= 1
    assert any(k.startswith("mailspool_smtp_connections_open") for k in samples)
    assert any('route="/v1/messages/{job_id}"' in k for k in samples)
    assert job_id not in text  # routes are templates, never paths
    assert all(k.startswith("mailspool_") for k in samples)


def test_in_process_workers_log_each_state_change(server: ApiServer, api: httpx.Client) -> None:
    job_id = api.post("/v1/messages", json=message("logged@example.com")).json()["id"]
    wait_final(api, job_id)
    deadline = time.monotonic() + 10
    while True:
        mine = [e for e in server.events() if e.get("job_id") == job_id]
        if {e["event"] for e in mine} >= {"message queued", "message sent"}:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.05)
    queued = next(e for e in mine if e["event"] == "message queued")
    # as docs/operations.md has it
    assert set(queued) - {"event", "level", "timestamp"} == {
        "job_id",
        "campaign",
        "domain",
        "state",
    }
    sent = next(e for e in mine if e["event"] == "message sent")
    assert sent["domain"] == "example.com" and sent["code"] == 250
    assert sent["campaign"] == "api" and sent["level"] == "info"
    assert "logged@example.com" not in server.log()  # the full address only at debug


# -- readiness -------------------------------------------------------------------------


class Forwarder:
    """A TCP forwarder from a loopback port to a real server (Redis, RabbitMQ,
    PostgreSQL), on an event loop in a thread of its own. ``cut()`` closes the port and
    every connection through it: to its clients the server is gone (connections closed,
    new ones refused). ``restore()`` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.restore()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the forwarder's."""
        parts = urlsplit(url)
        user, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{self.port}"))

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            pair = {writer, up_writer}
            self._writers |= pair
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            self._writers -= pair
        finally:
            self._handlers.discard(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:  # reset by either side
            pass
        finally:
            dst.close()


@pytest.fixture
def forward() -> Iterator[Callable[[str], Forwarder]]:
    """``forward(url)``: a Forwarder to the server ``url`` names."""
    made: list[Forwarder] = []
    default_ports = {"redis": 6379, "amqp": 5672, "postgresql": 5432}

    def start(url: str) -> Forwarder:
        parts = urlsplit(url)
        port = parts.port or default_ports[parts.scheme]
        made.append(Forwarder(parts.hostname or "127.0.0.1", port))
        return made[-1]

    yield start
    for f in made:
        f.close()


def test_readyz_is_503_while_the_redis_queue_is_unreachable(
    tmp_path: Path, redis_url: str, forward: Callable[[str], Forwarder]
) -> None:
    redis = forward(redis_url)
    srv = ApiServer(tmp_path, "--workers", "0", queue=redis.url(redis_url))
    try:
        assert srv.readyz() == (200, "ready")
        with srv.client() as c:  # the queue is that Redis, through the forwarder
            assert c.post("/v1/messages", json=message()).status_code == 202
        redis.cut()
        started = time.monotonic()
        srv.wait_readyz(503, "queue unavailable")
        assert time.monotonic() - started < 10  # the probe answers (within its 2 s bound)
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # the process is fine
        redis.restore()
        srv.wait_readyz(200, "ready")  # not ready only while Redis is gone
    finally:
        redis.restore()
        srv.stop()
    unready = [e for e in srv.events() if e.get("event") == "not ready: the queue does not answer"]
    assert unready and unready[0]["level"] == "warning"


def test_readyz_is_503_once_an_in_process_worker_stopped(
    tmp_path: Path, redis_url: str, forward: Callable[[str], Forwarder], smtpd: RecordingSMTPServer
) -> None:
    """Redis gone for longer than the queue's reconnect window (1 s here) stops the worker
    loop; when Redis is back the queue answers again, but the worker does not come back."""
    redis = forward(redis_url)
    srv = ApiServer(
        tmp_path, "--workers", "1", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        queue=redis.url(redis_url) + "&reconnect_for=1",
    )  # fmt: skip
    try:
        assert srv.readyz() == (200, "ready")
        redis.cut()
        srv.wait_event("worker stopped on an error")
        with srv.client() as c:
            r = c.post("/v1/messages", json=message())
            assert (r.status_code, r.json()) == (503, {"detail": "the queue is unavailable"})
        assert srv.readyz() == (503, "queue unavailable")  # the queue is checked first
        redis.restore()
        srv.wait_readyz(503, "worker stopped")
        with srv.client() as c:  # the queue answers again: only the worker is missing
            assert c.post("/v1/messages", json=message()).status_code == 202
        assert srv.readyz() == (503, "worker stopped")
    finally:
        redis.restore()
        srv.stop()


def test_readyz_checks_the_rabbitmq_broker_and_the_job_store(
    tmp_path: Path, rabbitmq: RabbitMQNamespace, forward: Callable[[str], Forwarder]
) -> None:
    """With RabbitMQ every read goes to the job store: the broker connection is checked
    apart from it, and either one gone makes the server unready."""
    broker, store = forward(rabbitmq.base_amqp), forward(rabbitmq.store)
    srv = ApiServer(
        tmp_path, "--workers", "0", "--store", store.url(rabbitmq.store),
        queue=broker.url(rabbitmq.amqp()),
    )  # fmt: skip
    try:
        assert srv.readyz() == (200, "ready")
        with srv.client() as c:
            job_id = c.post("/v1/messages", json=message()).json()["id"]
            assert c.get(f"/v1/messages/{job_id}").json()["state"] == "queued"
        broker.cut()
        srv.wait_readyz(503, "queue unavailable")
        broker.restore()
        srv.wait_readyz(200, "ready")  # the queue reconnects
        store.cut()
        srv.wait_readyz(503, "queue unavailable")
        store.restore()
        srv.wait_readyz(200, "ready")
    finally:
        broker.restore()
        store.restore()
        srv.stop()


# -- the process -----------------------------------------------------------------------


def test_workers_zero_leaves_delivery_to_worker_processes(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    srv = ApiServer(tmp_path, "--workers", "0")
    try:
        with srv.client() as c:
            job_id = c.post("/v1/messages", json=message("later@example.com")).json()["id"]
            assert c.get(f"/v1/messages/{job_id}").json()["state"] == "queued"
            worker = subprocess.run(
                [
                    sys.executable, "-m", "mailspool", "worker", "--drain",
                    "--queue", f"sqlite:///{srv.db}", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
                ],
                cwd=tmp_path, capture_output=True, text=True, timeout=60,
                env={k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")},
            )  # fmt: skip
            assert worker.returncode == 0, worker.stderr
            assert c.get(f"/v1/messages/{job_id}").json()["state"] == "sent"
    finally:
        srv.stop()
    assert [m.recipients for m in smtpd.messages] == [["later@example.com"]]
    assert "Application shutdown complete" in srv.log()


def test_serve_needs_tokens(cli: Callable[..., Result], tmp_path: Path) -> None:
    res = cli("serve", "--port", str(free_port()))
    assert res.returncode == 2
    assert "MAILSPOOL_API_TOKENS" in res.stderr
    res = cli("serve", "--port", str(free_port()), env={"MAILSPOOL_API_TOKENS": "short"})
    assert res.returncode == 2 and "at least 16" in res.stderr and "short" not in res.stderr
    tokens = tmp_path / "tokens"
    tokens.write_text("# API clients\nfirst-token-0123456789, second-token-0123456789\n")
    t = Tokens.from_environment({"MAILSPOOL_API_TOKENS_FILE": str(tokens)})
    assert t.check("second-token-0123456789") and not t.check("first-token-012345678")
    assert "0123" not in repr(t)
    with pytest.raises(ConfigError, match="cannot read"):
        Tokens.from_environment({"MAILSPOOL_API_TOKENS_FILE": str(tmp_path / "missing")})


def test_serve_takes_tokens_from_the_file_alone(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "# API clients\n# retired-token-0123456789\n"
        "first-token-0123456789, second-token-0123456789\nthird-token-0123456789\n"
    )
    srv = ApiServer(
        tmp_path, "--workers", "0", env={"MAILSPOOL_API_TOKENS_FILE": str(tokens)},
        env_tokens=False, token="third-token-0123456789",
    )  # fmt: skip
    assert "MAILSPOOL_API_TOKENS" not in srv.env
    try:
        for good in ("first-token-0123456789", "second-token-0123456789", srv.token):
            with srv.client(good) as c:
                r = c.post("/v1/messages", json=message())
                assert r.status_code == 202, (good, r.text)
                assert c.get(f"/v1/messages/{r.json()['id']}").status_code == 200
                assert c.get("/metrics").status_code == 200
        # commented out, a prefix of a token, a token not in the file
        for bad in ("retired-token-0123456789", "first-token-012345678", TOKEN):
            with srv.client(bad) as c:
                r = c.post("/v1/messages", json=message())
                assert r.status_code == 401, (bad, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert c.get("/metrics").status_code == 401
    finally:
        srv.stop()
    assert "token-0123456789" not in srv.log()


def test_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    srv = ApiServer(tmp_path, "--workers", "0")
    try:
        listening = [e for e in srv.events() if e.get("event") == "api listening"]
        deadline = time.monotonic() + 10
        while not listening:
            assert time.monotonic() < deadline
            time.sleep(0.05)
            listening = [e for e in srv.events() if e.get("event") == "api listening"]
        assert listening[0]["host"] == "127.0.0.1"
    finally:
        srv.stop()


def test_rate_sampler() -> None:
    s = RateSampler(window=60)
    assert s.rate("c", 0, now=100.0) is None
    assert s.rate("c", 10, now=100.5) is None  # under a second: no rate yet
    assert s.rate("c", 50, now=110.0) == pytest.approx(5.0)
    assert s.rate("c", 650, now=170.0) == pytest.approx(10.0)  # the window moved on
    assert s.rate("c", 650, now=300.0) == pytest.approx(0.0)


def test_group_commit_shares_one_enqueue() -> None:
    from mailspool.api.intake import GroupCommit
    from mailspool.models import Enqueued, Job

    class Counting(MemoryQueue):
        calls = 0

        async def enqueue(self, jobs: Any) -> list[Enqueued]:
            Counting.calls += 1
            return await super().enqueue(jobs)

    def job(i: int) -> Job:
        return Job(f"id{i}", "c", f"k{i}", "<m>", "a@example.com", ("b@example.com",), b"x")

    async def run() -> list[list[Enqueued]]:
        commit = GroupCommit(Counting())
        return await asyncio.gather(*(commit.enqueue([job(i)]) for i in range(10)))

    results = asyncio.run(run())
    assert results == [[Enqueued.NEW]] * 10
    assert Counting.calls == 1
