"""Stopping ``mailspool send`` with Ctrl-C, run as a user runs it, against real servers.

The first SIGINT: messages whose SMTP transaction has begun finish; those still waiting
(here for ``--rate``) go back to the queue untried at once and are never sent after the
signal. The second: the messages in their transaction are cut short and recorded as
interrupted (ambiguous); the rest goes back untried. Either way the run prints its
summary and how to resume, and exits 130; the next run sends the rest once, and counts
as ambiguous only what was cut short."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.testing import RecordingSMTPServer, SMTPSink
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.processes import env, mailspool, per_recipient, status, twice_only_in_the_window
from tests.support.smtp import wait_for_a_final_dot

N = 40
EVERYONE = {f"user{i}@example.com" for i in range(N)}


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_csv(tmp_path / "r.csv", [(r.partition("@")[0], r) for r in sorted(EVERYONE)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return tmp_path


def send(cwd: Path, port: int, *extra: str, stderr: Path) -> subprocess.Popen[str]:
    """``mailspool send`` in the background, its summary (--json) on a pipe, its stderr
    in a file (read while it runs)."""
    cmd = mailspool(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{port}", "--json",
        *extra,
    )  # fmt: skip
    with stderr.open("w") as err:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=err, text=True
        )


def wait_until(check: Callable[[], bool], p: subprocess.Popen[str]) -> None:
    """Wait until ``check()`` holds; fails if the run exits first, or after a minute (a
    bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while not check():
        assert p.poll() is None, "the run ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finish(p: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = p.communicate(timeout=60)
    return dict(json.loads(out.strip().splitlines()[-1]))


def unsent(cwd: Path) -> set[tuple[str, int, Any, int]]:
    """(state, attempts, lease owner, ambiguous) of every job not sent."""
    db = sqlite3.connect(cwd / "mailspool.db")
    try:
        return set(
            db.execute(
                "SELECT state, attempts, lease_owner, ambiguous FROM jobs WHERE state != 'sent'"
            )
        )
    finally:
        db.close()


def assert_told_how_to_resume(stderr: str, s: dict[str, Any]) -> None:
    assert "interrupted" in stderr and "Run the same command again to resume" in stderr
    assert f"{s['pending']} pending" in stderr


def test_ctrl_c_hands_back_the_messages_waiting_for_the_rate(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    stderr = job / "stderr.txt"
    p = send(job, smtpd.port, "--rate", "2/s", stderr=stderr)
    try:
        wait_until(lambda: len(smtpd.messages) >= 3, p)
        at_signal = len(smtpd.messages)
        p.send_signal(signal.SIGINT)
        s = finish(p)
    finally:
        p.kill()
    assert p.returncode == 130, stderr.read_text()
    assert_told_how_to_resume(stderr.read_text(), s)
    # at 2/s one message begins every half second and a transaction with a server on
    # loopback takes milliseconds: only one begun at the signal (two at worst) may arrive
    # after it; the senders waiting for the rate (up to 8) must not go on sending
    assert len(smtpd.messages) - at_signal <= 2
    assert s["sent"] == len(smtpd.messages) < N and s["ambiguous"] == 0
    st = status(job)
    assert st.get("sending", 0) == 0 and st.get("ambiguous", 0) == 0
    assert st["queued"] == s["pending"] == N - s["sent"]
    # back untried: queued, no attempt charged, no lease kept, not ambiguous
    assert unsent(job) == {("queued", 0, None, 0)}

    again = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json"
    )
    assert again.returncode == 0, again.stderr
    s2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert s2["sent"] == N - s["sent"] and s2["ambiguous"] == 0
    got = [m.recipients[0] for m in smtpd.messages]
    assert sorted(got) == sorted(EVERYONE)  # each exactly once


def test_a_second_ctrl_c_cuts_short_only_the_transactions_under_way(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    """The relay holds its answer to the final dot for 30 s: the messages whose
    transaction began wait for it when the second Ctrl-C comes."""
    slow = smtp_sink("-W", ".:30")
    stderr = job / "stderr.txt"
    p = send(job, slow.port, "--rate", "2/s", stderr=stderr)
    try:
        wait_for_a_final_dot(slow, p)  # a transaction is under way
        p.send_signal(signal.SIGINT)
        wait_until(lambda: "stopping:" in stderr.read_text(), p)
        p.send_signal(signal.SIGINT)
        s = finish(p)
    finally:
        p.kill()
    text = stderr.read_text()
    assert p.returncode == 130, text
    assert "stopping now" in text and "counted as ambiguous" in text
    assert_told_how_to_resume(text, s)
    cut = s["ambiguous"]
    assert cut >= 1 and s["sent"] == 0  # nothing answered: each begun one was cut short
    st = status(job)
    # nothing left leased: cut short, recorded as interrupted (due again at once,
    # ambiguous); the rest back untried
    assert st.get("sending", 0) == 0 and st["deferred"] == st["ambiguous"] == cut
    assert unsent(job) == {("deferred", 1, None, 1), ("queued", 0, None, 0)}
    assert len(slow.received()) <= cut  # the relay saw nothing that was not cut short

    fast = smtp_sink()
    again = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{fast.port}", "--json"
    )
    assert again.returncode == 0, again.stderr
    s2 = json.loads(again.stdout.strip().splitlines()[-1])
    # nothing more became ambiguous: no lease of the first run was left to reclaim
    assert s2["sent"] == N and s2["ambiguous"] == cut
    got = per_recipient(slow.received() + fast.received())
    twice_only_in_the_window(got, EVERYONE, cut)
