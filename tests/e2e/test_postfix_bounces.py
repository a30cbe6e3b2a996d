"""Bounces Postfix makes itself, end to end: ``mailspool send`` with a VERP return path
through a private Postfix, which relays to a server refusing some recipients with
``550 5.1.1``; Postfix builds the delivery status notifications and mails them to the
return path, whose domain it routes to ``mailspool inbound``. The refused recipients end
suppressed (bounced) with 5.1.1 on their jobs; the others are untouched."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.message.verp import ENV_SECRET
from mailspool.queue import make_queue
from mailspool.queue.suppression import Reason
from mailspool.testing import RecordingSMTPServer, free_port, wait_listening
from tests.support.cli import TEMPLATE, Result, json_events, write_csv
from tests.support.postfix import private_postfix
from tests.support.processes import env, mailspool
from tests.support.returned import job_of

SECRET = "postfix-return-path-secret-" + "s" * 30
BASE = "bounces@bounce.example.com"
REFUSED = ["gone1@example.org", "gone2@example.org"]
ACCEPTED = ["ann@example.org", "bob@example.org"]


def outcome(queue: str, job: str) -> tuple[tuple[str, ...], str | None, bool | None]:
    """The job's recipients, and the status and permanence of its latest return."""

    async def go() -> tuple[tuple[str, ...], str | None, bool | None]:
        async with make_queue(queue) as q:
            stored, latest = await q.get(job), await q.returns.latest(job)
            assert stored is not None
            if latest is None:
                return stored.recipients, None, None
            return stored.recipients, latest.status, latest.permanent

    return asyncio.run(go())


def suppressions(queue: str) -> dict[str, Reason]:
    async def go() -> dict[str, Reason]:
        async with make_queue(queue) as q:
            return {e.address: e.reason for e in await q.suppressions.entries()}

    return asyncio.run(go())


@pytest.mark.slow  # about 6 s: starting and stopping Postfix take half of it
def test_postfix_bounces_reach_the_listener_and_suppress_the_refused(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queue = f"sqlite:///{tmp_path / 'queue.db'}"
    secret = {ENV_SECRET: SECRET}
    listen = free_port()
    log = tmp_path / "listener.log"
    routes = {"bounce.example.com": listen}  # the return path's domain: to the listener
    with RecordingSMTPServer() as sink, private_postfix(sink.port, routes) as pf:
        for rcpt in REFUSED:
            sink.handler.rcpt_replies[rcpt] = f"550 5.1.1 <{rcpt}>: Recipient address rejected"
        with log.open("wb") as out:
            listener = subprocess.Popen(
                mailspool("inbound", "--queue", queue, "--return-path", BASE,
                          "--listen", f"127.0.0.1:{listen}", "--log-format", "json"),
                cwd=tmp_path, env={**env(), **secret}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            assert wait_listening(listen), log.read_text()
            write_csv(tmp_path / "r.csv", [(a.split("@")[0], a) for a in ACCEPTED + REFUSED])
            (tmp_path / "t.txt").write_text(TEMPLATE)
            sent = cli("send", "r.csv", "--template", "t.txt", "--queue", queue,
                       "--smtp", f"smtp://127.0.0.1:{pf.port}", "--return-path", BASE,
                       env=secret)  # fmt: skip
            assert sent.returncode == 0, sent.stderr
            # Postfix relays, is refused, bounces, and delivers the bounces: wait for them
            deadline = time.monotonic() + 60
            while len(json_events(log.read_text(), "returned mail")) < len(REFUSED):
                assert time.monotonic() < deadline, f"{log.read_text()}\n{pf.log()}"
                time.sleep(0.1)
            listener.send_signal(signal.SIGTERM)
            assert listener.wait(timeout=60) == 0, log.read_text()
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
        relayed = {m.recipients[0]: str(m.message["Message-ID"]) for m in sink.messages}

    events = json_events(log.read_text(), "returned mail")
    assert sorted(e["kind"] for e in events) == ["dsn", "dsn"], events
    assert all(e["envelope_to"].startswith("bounces+") for e in events), events
    assert all(e["action"] == "suppressed" and e["statuses"] == ["5.1.1"] for e in events)
    for e in events:
        recipients, status, permanent = outcome(queue, e["job"])
        assert recipients[0] in REFUSED and (status, permanent) == ("5.1.1", True)
    assert {outcome(queue, e["job"])[0][0] for e in events} == set(REFUSED)
    assert suppressions(queue) == dict.fromkeys(REFUSED, Reason.BOUNCED)
    assert sorted(relayed) == ACCEPTED
    for rcpt in ACCEPTED:
        assert outcome(queue, job_of(queue, relayed[rcpt])) == ((rcpt,), None, None)
