"""Campaign control end to end, as an operator uses it: a running ``mailspool worker``
(a subprocess, ``--rate 20/s``) delivering to a recording SMTP server, and ``mailspool
campaign pause|resume|cancel`` from another process, on the SQLite queue, on Redis and
on RabbitMQ with its PostgreSQL store; then the same through the HTTP API of ``mailspool
serve``.

What the server receives is polled and compared, never timed: after a pause or a cancel
it may grow for two seconds (messages in flight finish, workers read the change), then
it stays put for two seconds more; a resume lets the campaign complete; a cancelled
campaign's remaining jobs end ``cancelled`` and none of them arrives later.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.api import ApiServer, message
from tests.support.cli import TEMPLATE, write_csv
from tests.support.processes import env, mailspool

# real-time rates: run alone, after the parallel part of make test (docs/testing-internals.md)
pytestmark = pytest.mark.serial

N = 100  # per campaign: 5 s at 20/s
RATE = "20/s"
SETTLE = 2.0  # seconds a pause or a cancel may take to stop the flow
STILL = 2.0  # seconds the flow then stays stopped


def arrived(server: RecordingSMTPServer, prefix: str) -> int:
    """Messages the server took for the recipients whose address starts with ``prefix``."""
    return sum(1 for m in server.messages if m.recipients[0].startswith(prefix))


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """Poll ``cond`` (the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def stops_and_stays(count: Callable[[], int]) -> int:
    """After a pause or a cancel: what ``count`` is once it stopped growing (within
    SETTLE seconds), checked unchanged for STILL seconds more."""
    time.sleep(SETTLE)
    settled = count()
    still_until = time.monotonic() + STILL
    while time.monotonic() < still_until:
        assert count() == settled, f"still arriving after {SETTLE}s: {count()} > {settled}"
        time.sleep(0.1)
    return settled


@pytest.fixture
def smtpd() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


# -- the command line --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis", "rabbitmq"])
def where(request: pytest.FixtureRequest) -> tuple[list[str], list[str]]:
    """The --queue (and --store) options of every command of a test, and the worker's
    own."""
    if request.param == "redis":
        return ["--queue", request.getfixturevalue("redis_url")], []
    if request.param == "rabbitmq":
        ns = request.getfixturevalue("rabbitmq")
        # a --rate over RabbitMQ is held in Redis, shared by every worker
        return ["--queue", ns.amqp(), "--store", ns.store], [
            "--limits-redis", request.getfixturevalue("redis_url")
        ]  # fmt: skip
    return [], []  # mailspool.db in the working directory


class Operator:
    """``mailspool`` commands in one working directory, on one queue."""

    def __init__(self, cwd: Path, where: tuple[list[str], list[str]]) -> None:
        self.cwd, (self.where, self.worker_where) = cwd, where
        (cwd / "t.txt").write_text(TEMPLATE)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            mailspool(*args, *self.where), cwd=self.cwd, env=env(), capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        p = self.run(*args)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def enqueue(self, campaign: str, prefix: str) -> None:
        csv = write_csv(
            self.cwd / f"{campaign}.csv", [(f"n{i}", f"{prefix}{i}@example.com") for i in range(N)]
        )
        self.ok("enqueue", csv.name, "--template", "t.txt", "--campaign", campaign)

    def status(self, campaign: str) -> dict[str, Any]:
        row: dict[str, Any] = json.loads(self.ok("status", "--campaign", campaign, "--json"))
        return row

    def worker(self, port: int) -> subprocess.Popen[bytes]:
        cmd = mailspool(
            "worker", "--smtp", f"smtp://127.0.0.1:{port}", "--rate", RATE,
            "--log-level", "warning", *self.where, *self.worker_where,
        )  # fmt: skip
        with (self.cwd / "worker.log").open("wb") as log:  # the child keeps its own copy
            return subprocess.Popen(cmd, cwd=self.cwd, env=env(), stdout=log, stderr=log)


def test_a_running_worker_pauses_resumes_and_cancels(
    tmp_path: Path, where: tuple[list[str], list[str]], smtpd: RecordingSMTPServer
) -> None:
    op = Operator(tmp_path, where)
    op.enqueue("spring", "s")
    worker = op.worker(smtpd.port)
    try:
        wait_until(lambda: arrived(smtpd, "s") >= 15, "the first messages of spring")
        assert json.loads(op.ok("campaign", "pause", "spring", "--json"))["state"] == "paused"
        held = stops_and_stays(lambda: arrived(smtpd, "s"))
        assert held < N
        st = op.status("spring")
        assert st["state"] == "paused" and st["sending"] == 0 and st["sent"] == held
        assert st["queued"] + st["deferred"] == N - held  # handed back, waiting
        op.ok("campaign", "pause", "spring")  # again: nothing changes
        assert json.loads(op.ok("campaign", "resume", "spring", "--json"))["state"] == "active"
        wait_until(lambda: op.status("spring")["sent"] == N, "spring to complete")
        assert arrived(smtpd, "s") == N

        # another campaign, cancelled midway: the rest ends cancelled, none arrives later
        op.enqueue("autumn", "a")
        wait_until(lambda: arrived(smtpd, "a") >= 15, "the first messages of autumn")
        out = json.loads(op.ok("campaign", "cancel", "autumn", "--json"))
        assert out["state"] == "cancelled" and 0 < out["cancelled"] < N
        got = stops_and_stays(lambda: arrived(smtpd, "a"))
        wait_until(lambda: op.status("autumn")["pending"] == 0, "autumn's held jobs to end")
        st = op.status("autumn")
        assert st["sent"] == got and st["cancelled"] == N - got and st["state"] == "cancelled"
        assert arrived(smtpd, "a") == got
        assert worker.poll() is None  # the worker runs on
    finally:
        worker.terminate()
        worker.wait(60)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
    assert arrived(smtpd, "a") == got  # nothing more on the way out either


# -- the HTTP API --------------------------------------------------------------------------


@pytest.fixture
def api_server(tmp_path: Path, smtpd: RecordingSMTPServer) -> Iterator[ApiServer]:
    srv = ApiServer(
        tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--workers", "1", "--rate", RATE
    )
    yield srv
    assert srv.stop() == 0


def post_campaign(api: httpx.Client, campaign: str, prefix: str) -> None:
    msgs = [message(f"{prefix}{i}@example.com", campaign=campaign) for i in range(N)]
    r = api.post("/v1/messages", json={"messages": msgs})
    assert r.status_code == 202, r.text


def test_the_api_pauses_resumes_and_cancels(
    api_server: ApiServer, smtpd: RecordingSMTPServer
) -> None:
    with api_server.client() as api:

        def campaign(name: str) -> dict[str, Any]:
            body: dict[str, Any] = api.get(f"/v1/campaigns/{name}").json()
            return body

        post_campaign(api, "api-spring", "s")
        wait_until(lambda: arrived(smtpd, "s") >= 15, "the first messages of api-spring")
        r = api.post("/v1/campaigns/api-spring/pause")
        assert r.status_code == 200 and r.json()["state"] == "paused"
        held = stops_and_stays(lambda: arrived(smtpd, "s"))
        got = campaign("api-spring")
        assert got["state"] == "paused" and got["counts"]["sent"] == held < N
        assert got["counts"]["sending"] == 0
        assert api.post("/v1/campaigns/api-spring/resume").json()["state"] == "active"
        wait_until(lambda: campaign("api-spring")["counts"]["sent"] == N, "api-spring")
        assert arrived(smtpd, "s") == N

        post_campaign(api, "api-autumn", "a")
        wait_until(lambda: arrived(smtpd, "a") >= 15, "the first messages of api-autumn")
        r = api.post("/v1/campaigns/api-autumn/cancel")
        assert r.status_code == 200 and 0 < r.json()["cancelled"] < N
        sent = stops_and_stays(lambda: arrived(smtpd, "a"))
        wait_until(lambda: campaign("api-autumn")["pending"] == 0, "api-autumn's held jobs")
        got = campaign("api-autumn")
        assert got["state"] == "cancelled" and got["counts"]["sent"] == sent
        assert got["counts"]["cancelled"] == N - sent and arrived(smtpd, "a") == sent


def test_send_stops_with_75_when_its_campaign_is_paused_midway(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    op = Operator(tmp_path, ([], []))
    csv = write_csv(tmp_path / "r.csv", [(f"n{i}", f"s{i}@example.com") for i in range(N)])
    cmd = mailspool(
        "send", csv.name, "--template", "t.txt", "--campaign", "spring", "--rate", RATE,
        "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--log-level", "warning",
    )  # fmt: skip
    send = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: arrived(smtpd, "s") >= 15, "the first messages")
        op.ok("campaign", "pause", "spring")
        _, err = send.communicate(timeout=60)
    finally:
        if send.poll() is None:
            send.kill()
            send.wait()
    assert send.returncode == 75, err
    assert "campaign spring is paused" in err and "mailspool campaign resume spring" in err
    st = op.status("spring")
    assert st["sent"] == arrived(smtpd, "s") < N and st["sending"] == 0
    op.ok("campaign", "resume", "spring")
    res = op.run(*cmd[3:])  # the same command again completes it
    assert res.returncode == 0, res.stderr
    assert op.status("spring")["sent"] == N == arrived(smtpd, "s")
