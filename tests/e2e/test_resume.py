"""SIGKILL halfway through 20,000 messages, then the same command again: every recipient
ends with exactly one message, except at most the messages in flight at the kill, which
keep their Message-ID. With ``--processes 2`` the kill is the parent's (it reads, queues
and delivers): its delivery process, left alone, finishes what it has in flight and
hands back the rest."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.testing import SMTPSink
from tests.support.cli import TEMPLATE
from tests.support.processes import alive, children_of, per_recipient, twice_only_in_the_window

N = 20_000
CONCURRENCY = 32


def sent_so_far(db: Path, mode: str = "ro") -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode={mode}", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM jobs WHERE state = 'sent'").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_halfway_then_resume(
    processes: int, tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    with (tmp_path / "r.csv").open("w") as f:
        f.write("Name, Email\n")
        for i in range(N):
            f.write(f"user{i}, user{i}@example.com\n")
    (tmp_path / "t.txt").write_text(TEMPLATE)
    sink = smtp_sink(dump=True)
    cmd = [
        sys.executable, "-m", "mailspool", "send", "r.csv", "--template", "t.txt",
        "--smtp", f"smtp://127.0.0.1:{sink.port}", "--concurrency", str(CONCURRENCY),
        "--json", "--log-level", "warning", "--processes", str(processes),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    p = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 120
    while sent_so_far(tmp_path / "mailspool.db") < N // 2:
        assert p.poll() is None, "send finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kids = children_of(p.pid)
    p.send_signal(signal.SIGKILL)
    p.wait()
    while any(alive(k) for k in kids):  # its delivery process stops by itself
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # read-write: a read-only connection cannot recover the WAL index the killed writer left
    killed_at = sent_so_far(tmp_path / "mailspool.db", mode="rw")
    assert N // 2 <= killed_at < N

    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert s["skipped_already_sent"] == killed_at
    assert s["sent"] == N - killed_at
    assert s["pending"] == 0 and s["dead"] == 0

    sink.stop()
    # only messages that were in flight (handed to the relay, not yet recorded) at the kill:
    # the worker keeps at most 2 * concurrency outcomes unrecorded, plus those in flight
    everyone = {f"user{i}@example.com" for i in range(N)}
    twice = twice_only_in_the_window(per_recipient(sink.received()), everyone, s["ambiguous"])
    assert len(twice) <= 3 * CONCURRENCY, len(twice)
