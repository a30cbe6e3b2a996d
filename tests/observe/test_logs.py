"""Structured logs: one event per state change with the fields operators filter on, the
full address only at debug level, and no secret anywhere.

The last test runs whole sends with an SMTP password (``mailspool send``, ``mailspool
worker`` with its metrics port, ``mailspool serve`` with its API) and searches every log
line, metric and API response for the password, the API token and their base64 forms,
AUTH PLAIN's ``\\0user\\0password`` included."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from mailspool.delivery.classify import classify
from mailspool.errors import AuthFailure, ReplyError
from mailspool.models import DeadReason, Job
from mailspool.observe.logs import LogObserver, configure
from mailspool.testing import RecordingSMTPServer, free_port, wait_listening
from mailspool.transport.base import Delivery
from tests.support.api import ApiServer, wait_final
from tests.support.cli import TEMPLATE, write_csv
from tests.support.paths import ROOT

PASSWORD = "Pa55-w0rd/with:odd@chars"
WRONG_PASSWORD = "wr0ng-Pa55word%x"
USER = "bob"
API_TOKEN = "api-token-for-the-secret-test-0123456789"


def job() -> Job:
    return Job(
        "j1", "spring", "k", "<j1@example.com>", "news@example.com",
        ("Carol@Example.ORG", "dave@example.org"), b"x", attempts=2,
    )  # fmt: skip


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_mailspool", False):
            root.removeHandler(h)


def test_state_changes_at_info_carry_the_domain_not_the_address() -> None:
    with capture_logs() as logs:
        obs = LogObserver("info", log=structlog.get_logger())
        obs.sent(job(), Delivery(250, "2.0.0 queued as ABC for <carol@example.org>"), 0.0123)
        err = ReplyError("mailbox busy <carol@example.org>", code=451, enhanced="4.2.1",
                         stage="rcpt")  # fmt: skip
        obs.deferred(job(), err, classify(err), time.time() + 300, 0.5)
        obs.dead(job(), DeadReason.REJECTED_PERMANENT, "550 5.1.1 <carol@example.org> unknown")
        obs.relay_paused(ReplyError("busy", code=421, stage="greeting"), 5.0)
    sent, deferred, dead, paused = logs
    assert sent == {
        "event": "message sent", "log_level": "info", "state": "sent", "job_id": "j1",
        "campaign": "spring", "domain": "example.org", "attempt": 2, "code": 250,
        "elapsed_ms": 12.3,
    }  # fmt: skip
    assert deferred["event"] == "message deferred" and deferred["log_level"] == "warning"
    assert deferred["code"] == 451 and deferred["stage"] == "rcpt" and deferred["kind"] == "4xx"
    assert deferred["enhanced"] == "4.2.1" and deferred["retry_in_s"] > 290
    assert dead["event"] == "message dead" and dead["log_level"] == "error"
    assert dead["reason"] == "rejected_permanent" and dead["code"] == 550
    assert paused["event"] == "relay paused" and paused["code"] == 421
    assert "carol" not in repr(logs).lower()  # neither the address nor the relay's text


def documented_job_events() -> dict[str, tuple[str, set[str]]]:
    """docs/operations.md's table of job events: event -> (level text, field names)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`(message|relay) [a-z ]+`", cells[0]):
            fields = re.sub(r"\([^)]*\)", "", cells[2])  # the remarks name other things
            found[cells[0].strip("`")] = (cells[1], set(re.findall(r"`([a-z_]+)`", fields)))
    return found


def test_the_job_events_are_those_operations_md_describes() -> None:
    with capture_logs() as logs:
        obs = LogObserver("info", log=structlog.get_logger())
        obs.sent(job(), Delivery(250, "ok", {"x@example.org": "550 no"}), 0.01)
        err = ReplyError("later", code=451, enhanced="4.2.1", stage="rcpt")
        obs.deferred(job(), err, classify(err), time.time() + 300, 0.5)
        obs.dead(job(), DeadReason.REJECTED_PERMANENT, "550 5.1.1 unknown")
        obs.suppressed(job())
        obs.cancelled(job())
        obs.relay_paused(ReplyError("busy", code=421, stage="greeting"), 5.0)
        obs.relay_paused(AuthFailure("535 no", code=535, stage="auth"), 5.0)
    documented = documented_job_events()
    for event in logs[:-1]:
        level, fields = documented[event["event"]]
        assert set(event) - {"event", "log_level"} == fields, event["event"]
        assert level.split()[0].rstrip(";") == event["log_level"], event["event"]
    refused = logs[-1]
    assert refused["event"] == "relay paused" and refused["log_level"] == "error"
    assert "error when the relay refused our credentials" in documented["relay paused"][0]
    # the API's events, logged by serve (tests/api); named here so the table stays whole
    assert set(documented) - {e["event"] for e in logs} == {
        "message queued",
        "message known already",
    }


def test_debug_level_adds_addresses_and_reply_text() -> None:
    with capture_logs() as logs:
        obs = LogObserver("debug", log=structlog.get_logger())
        obs.sent(job(), Delivery(250, "ok"), 0.01)
        obs.dead(job(), DeadReason.INVALID_MESSAGE, "attachment missing")
    assert logs[0]["recipients"] == ["Carol@Example.ORG", "dave@example.org"]
    assert logs[0]["reply"] == "250 ok"
    assert logs[1]["code"] is None and logs[1]["reply"] == "attachment missing"


def test_per_message_events_can_be_lowered_and_levels_filter() -> None:
    with capture_logs() as logs:
        LogObserver("info", per_message="debug", log=structlog.get_logger()).sent(
            job(), Delivery(250, "ok"), 0.01
        )
        err = ReplyError("later", code=451, stage="rcpt")
        LogObserver("error", log=structlog.get_logger()).deferred(
            job(), err, classify(err), time.time(), 0.1
        )
    assert logs == []


def test_json_lines_for_structlog_and_the_standard_library(restore_logging: None) -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    structlog.get_logger("mailspool").info("hello", job_id="j1")
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:1")
    logging.getLogger("uvicorn.error").debug("not shown")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["event"], x["level"]) for x in lines] == [
        ("hello", "info"),
        ("Uvicorn running on http://127.0.0.1:1", "info"),
    ]
    assert lines[1]["logger"] == "uvicorn.error" and "timestamp" in lines[0]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_show_no_local_variables(restore_logging: None, fmt: str) -> None:
    out = io.StringIO()
    configure("info", fmt, stream=out)

    def connect() -> None:
        password = PASSWORD  # noqa: F841 - a local a rich traceback would print
        raise ConnectionError("refused")

    try:
        connect()
    except ConnectionError:
        structlog.get_logger().exception("relay failed")
        logging.getLogger("uvicorn.error").exception("relay failed (stdlib)")
    text = out.getvalue()
    assert "ConnectionError: refused" in text
    assert PASSWORD not in text


# -- whole sends with a password ---------------------------------------------------------


def secret_forms(secret: str, user: str = USER) -> set[str]:
    """The secret as it could leak: as is, URL-encoded, and base64 as AUTH PLAIN and
    AUTH LOGIN carry it (standard and URL-safe alphabets, with and without padding)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret)}
    for blob in (raw, b"\0" + user.encode() + b"\0" + raw, user.encode() + b"\0" + raw):
        for enc in (base64.b64encode(blob), base64.urlsafe_b64encode(blob)):
            text = enc.decode()
            forms |= {text, text.rstrip("=")}
    return forms


def assert_no_secret(where: str, text: str) -> None:
    for secret in (PASSWORD, WRONG_PASSWORD, API_TOKEN):
        for form in secret_forms(secret):
            assert form not in text, f"a form of a secret ({form!r}) appears in {where}"


def env_without_mailspool(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSPOOL_", "OTEL_"))}
    return env | extra


def run(tmp: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailspool", *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_no_secret_in_any_log_line_metric_or_response(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(10)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    outputs: dict[str, str] = {}
    with RecordingSMTPServer(credentials=(USER, PASSWORD), tls=server_tls) as relay:
        common = ("--log-level", "debug", "--log-format", "json")
        tls = f"?starttls=required&cafile={ca_file}"
        # 1. send, with the password in the URL
        url = f"smtp://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{relay.port}{tls}"
        res = run(tmp_path, "send", "r.csv", "--template", "t.txt", "--smtp", url, "--json",
                  "--queue", "sqlite:///send.db", *common, env=env_without_mailspool())  # fmt: skip
        assert res.returncode == 0, res.stderr
        outputs["send stdout"], outputs["send stderr"] = res.stdout, res.stderr

        # 2. a wrong password: the failure path must not print it either
        res = run(tmp_path, "send", "r.csv", "--template", "t.txt", "--campaign", "wrong",
                  "--smtp", f"smtp://{USER}@127.0.0.1:{relay.port}{tls}", "--json",
                  "--queue", "sqlite:///wrong.db", *common,
                  env=env_without_mailspool(MAILSPOOL_SMTP_PASSWORD=WRONG_PASSWORD))  # fmt: skip
        assert res.returncode == 75, res.stderr  # the relay refused us: jobs stay queued
        assert "535" in res.stderr
        outputs["wrong stdout"], outputs["wrong stderr"] = res.stdout, res.stderr

        # 3. a worker with the password from a file, and its metrics endpoint
        assert run(tmp_path, "enqueue", "r.csv", "--template", "t.txt", "--campaign", "w",
                   "--queue", "sqlite:///worker.db",
                   env=env_without_mailspool()).returncode == 0  # fmt: skip
        outputs |= _worker_with_metrics(tmp_path, f"127.0.0.1:{relay.port}{tls}", common)

        # 4. the API, with workers in the server, and the password from the environment
        outputs |= _api_session(tmp_path, f"127.0.0.1:{relay.port}{tls}")
    assert (USER, PASSWORD) in relay.auth_attempts  # the password was really used
    assert (USER, WRONG_PASSWORD) in relay.auth_attempts
    assert len(relay.messages) == 10 + 10 + 4
    assert all(m.tls and m.auth == USER for m in relay.messages)
    for where, text in outputs.items():
        assert text, f"{where} is empty: nothing was checked"
        assert_no_secret(where, text)


def _worker_with_metrics(tmp: Path, relay: str, common: tuple[str, ...]) -> dict[str, str]:
    port = free_port()
    log = tmp / "worker.log"
    env = env_without_mailspool(MAILSPOOL_SMTP_PASSWORD_FILE=str(tmp / "pw"))
    cmd = [sys.executable, "-m", "mailspool", "worker", "--queue", "sqlite:///worker.db",
           "--smtp", f"smtp://{USER}@{relay}", "--metrics-port", str(port),
           *common]  # fmt: skip
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        # generous bounds: they only keep a broken run from hanging, on a loaded machine
        assert wait_listening(port, 60), log.read_text()[-3000:]
        deadline = time.monotonic() + 90
        while True:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            if 'mailspool_queue_depth{state="sent"} 10.0' in metrics:
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    text = log.read_text()
    assert '"message sent"' in text and '"recipients"' in text  # debug: the full record
    return {"worker log": text, "worker metrics": metrics}


def _api_session(tmp: Path, relay: str) -> dict[str, str]:
    srv = ApiServer(
        tmp, "--smtp", f"smtp://{USER}@{relay}", "--log-level", "debug",
        env={"MAILSPOOL_SMTP_PASSWORD": PASSWORD}, token=API_TOKEN,
    )  # fmt: skip
    seen: list[str] = []

    def keep(r: httpx.Response) -> httpx.Response:
        seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        return r

    try:
        with srv.client() as api:
            one = keep(api.post("/v1/messages", json=_msg("a1@example.com"))).json()["id"]
            batch = {"messages": [_msg("a2@example.com"), _msg("a3@example.com")]}
            ids = keep(api.post("/v1/messages", json=batch)).json()["ids"]
            keep(api.put("/v1/templates/t", json={"text": TEMPLATE}))
            tpl = {"template": "t", "variables": {"Email": "a4@example.com", "Name": "A"}}
            ids.append(keep(api.post("/v1/messages", json=tpl)).json()["id"])
            for job_id in (one, *ids):
                wait_final(api, job_id)
                keep(api.get(f"/v1/messages/{job_id}"))
            keep(api.post("/v1/messages", json=_msg("not an address")))
            keep(api.get("/v1/campaigns/api"))
            keep(api.post("/v1/dead-letters/retry", json={}))
            keep(api.get("/metrics"))
            keep(api.get("/readyz"))
            keep(api.get("/openapi.json"))
        with srv.client(token="not-the-token-0123456789") as wrong:
            keep(wrong.get("/v1/campaigns/api"))
    finally:
        srv.stop()
    return {"api responses": "\n".join(seen), "api log": srv.log()}


def _msg(to: str) -> dict[str, Any]:
    return {"from": "app@example.com", "to": to, "subject": "s", "text": "t"}


def test_a_broken_stderr_does_not_break_the_caller(restore_logging: None) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("the reader went away")

    configure("info", "json", stream=Broken())
    structlog.get_logger().info("still fine")
    logging.getLogger("uvicorn.error").warning("still fine")
    LogObserver("info", log=structlog.get_logger()).sent(job(), Delivery(250, "ok"), 0.01)
