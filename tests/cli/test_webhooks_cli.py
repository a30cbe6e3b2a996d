"""Webhooks from the command line, as a user runs them: ``send --webhook`` posts each
job's event signed and waits for them at its end; a down endpoint does not hold up
mail, and what it missed waits in the job store; ``mailspool webhooks list`` shows it,
``test`` posts a signed test event, ``retry`` delivers dead-lettered events again."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from mailspool.testing import RecordingSMTPServer
from mailspool.testing.webhooks import WebhookReceiver
from tests.support.cli import TEMPLATE, Result, write_csv

SECRET = "whsec_" + base64.b64encode(b"c" * 32).decode()
ENV = {"MAILSPOOL_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def job(tmp_path: Path) -> Path:
    rows = [(f"user{i}", f"user{i}@example.com") for i in range(12)] + [("x", "no@example.com")]
    write_csv(tmp_path / "r.csv", rows)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return tmp_path


def send(cli: Callable[..., Result], smtpd: RecordingSMTPServer, *extra: str) -> Result:
    return cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        "--json", *extra, env=ENV,
    )  # fmt: skip


def test_send_posts_every_event_signed(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    smtpd.handler.rcpt_replies["no@example.com"] = "550 5.1.1 no such user"
    with WebhookReceiver() as rx, WebhookReceiver() as dead_only:
        res = send(cli, smtpd, "--webhook", rx.url, "--webhook", "dead=" + dead_only.url)
    assert res.returncode == 1, res.stderr  # one dead letter
    summary = json.loads(res.stdout)
    assert summary["sent"] == 12 and summary["dead"] == 1
    assert summary["webhooks"] == {"waiting": 0, "dead": 0}  # all taken before the exit
    bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in rx.requests]
    assert sorted(b["type"] for b in bodies) == ["dead"] + ["sent"] * 12
    assert {b["data"]["recipient"] for b in bodies} == {
        *(f"user{i}@example.com" for i in range(12)),
        "no@example.com",
    }
    assert len({r.headers["webhook-id"] for r in rx.requests}) == 13
    [only] = [json.loads(r.body) for r in dead_only.requests]
    assert only["type"] == "dead" and only["data"]["recipient"] == "no@example.com"


def test_a_down_endpoint_holds_up_nothing_and_loses_nothing(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    rx = WebhookReceiver()
    url = rx.url  # nobody listens there yet
    res = send(cli, smtpd, "--webhook", url, "--webhook-drain", "1s")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["sent"] == 13  # mail went out all the same
    assert summary["webhooks"]["waiting"] == 13
    listed = cli("webhooks", "list", "--webhook", url, "--json", env=ENV)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["configured"] and row["unread"] + row["retrying"] == 13
    assert "cannot connect" in row["last_error"]
    # the endpoint comes back: a worker with the same --webhook delivers what it missed
    with rx:
        drained = cli("worker", "--drain", "--webhook", url, env=ENV)
        assert drained.returncode == 0, drained.stderr
        listed = cli("webhooks", "list", "--webhook", url, "--json", env=ENV)
    [row] = json.loads(listed.stdout)
    assert (row["unread"], row["retrying"], row["dead"]) == (0, 0, 0), row
    assert len({r.headers["webhook-id"] for r in rx.requests}) == 13


def test_dead_lettered_events_are_retried_on_demand(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    with WebhookReceiver(status=500) as rx:
        res = send(
            cli, smtpd, "--webhook", rx.url, "--webhook-retry-period", "0.2s",
            "--webhook-drain", "3s",
        )  # fmt: skip
        summary = json.loads(res.stdout)
        assert summary["webhooks"]["dead"] == 13, summary
        text = cli("webhooks", "list", "--webhook", rx.url, env=ENV)
        assert "dead 13" in text.stdout and "HTTP 500" in text.stdout
        rx.answer(204)
        again = cli("webhooks", "retry", "--webhook", rx.url, "--json", env=ENV)
        assert again.returncode == 0, again.stderr + again.stdout
        [row] = json.loads(again.stdout)
        assert row == {"endpoint": rx.url, "revived": 13, "waiting": 0, "dead": 0}
    assert len({r.headers["webhook-id"] for r in rx.requests}) == 13


def test_webhooks_test_posts_a_signed_test_event(cli: Callable[..., Result]) -> None:
    with WebhookReceiver() as ok, WebhookReceiver(status=404) as bad:
        res = cli("webhooks", "test", "--webhook", ok.url, "--webhook", bad.url, env=ENV)
    assert res.returncode == 1
    assert f"{ok.url}: HTTP 204" in res.stdout and f"{bad.url}: HTTP 404  FAILED" in res.stdout
    [req] = ok.requests
    assert Webhook(SECRET).verify(req.body, req.headers)["type"] == "test"


def test_mistakes_are_one_clear_line(cli: Callable[..., Result]) -> None:
    no_secret = cli("webhooks", "test", "--webhook", "http://127.0.0.1:9/x")
    assert no_secret.returncode == 2 and "MAILSPOOL_WEBHOOK_SECRET" in no_secret.stderr
    bad = cli("webhooks", "list", "--webhook", "opened=http://127.0.0.1:9/x", env=ENV)
    assert bad.returncode == 2 and "unknown event type opened" in bad.stderr
    nothing = cli("webhooks", "test", env=ENV)
    assert nothing.returncode == 2 and "no webhook endpoint" in nothing.stderr
    for r in (no_secret, bad, nothing):
        assert "Traceback" not in r.stderr


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_delivery_process_goes_when_its_parent_is_killed(tmp_path: Path) -> None:
    """The webhook delivery child of a worker killed with SIGKILL (no chance to stop it)
    notices and exits: nothing is left running, nothing holds the endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")} | ENV
    with WebhookReceiver() as rx:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mailspool", "worker", "--webhook", rx.url],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (kids := children_of(worker.pid)):
                assert time.monotonic() < deadline, "no delivery process started"
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{k}").exists() for k in kids):
            assert time.monotonic() < deadline, "the delivery process outlived its parent"
            time.sleep(0.05)
