"""``send`` and ``worker`` with ``--processes N``: delivery in child processes that the
command supervises, with the guarantees of one process (cli/processes.py,
delivery/supervisor.py). The SIGKILL resume and chaos runs take ``--processes 2`` too
(tests/e2e/test_resume.py, test_chaos.py), and so do the worker's signal tests
(tests/cli/test_worker.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mailspool.testing import RecordingSMTPServer, SMTPSink
from tests.support.cli import TEMPLATE, Result, run_cli, write_csv
from tests.support.processes import (
    alive,
    children_of,
    env,
    per_recipient,
    status,
    twice_only_in_the_window,
    worker_cmd,
)
from tests.support.smtp import timing_server, wait_for_a_final_dot
from tests.support.timing import ArrivalTimes, assert_rate


def recipients(where: Path, n: int) -> list[str]:
    where.mkdir(parents=True, exist_ok=True)
    emails = [f"u{i}@example.com" for i in range(n)]
    write_csv(where / "r.csv", [(e.partition("@")[0], e) for e in emails])
    (where / "t.txt").write_text(TEMPLATE)
    return emails


def summary(res: Result) -> dict[str, object]:
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_send_delivers_every_row_once_and_sums_up_as_one_process(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    relay = ["--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json"]
    runs = {}
    for n in (1, 2):
        emails = recipients(tmp_path / str(n), 300)
        res = run_cli(tmp_path / str(n), "send", "r.csv", "--template", "t.txt",
                      "--processes", str(n), *relay)  # fmt: skip
        runs[n] = summary(res)
    one, two = runs[1], runs[2]
    assert set(one) == set(two)  # the same summary, key for key
    assert (two["sent"], two["queued"], two["pending"], two["ambiguous"]) == (300, 300, 0, 0)
    got = per_recipient([(m.recipients, m.message["Message-ID"]) for m in smtpd.messages])
    # each run's recipients once, same addresses in both runs: twice in all
    assert sorted(got) == sorted(emails) and all(len(ids) == 2 for ids in got.values())


def test_worker_processes_drain_the_queue_and_log_one_tally(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    cwd = enqueued(400)
    sink = smtp_sink(dump=True)
    cmd = worker_cmd(sink.port, "--drain", "--processes", "2", "--log-format", "json")
    cmd[cmd.index("warning")] = "info"
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert status(cwd)["sent"] == 400 and len(sink.received()) == 400
    [stopped] = [
        e for e in map(json.loads, p.stderr.splitlines()) if e["event"] == "worker stopped"
    ]
    assert (stopped["processes"], stopped["sent"], stopped["dead"]) == (2, 400, 0)


def test_the_rate_holds_for_the_whole_command(tmp_path: Path) -> None:
    """Without Redis each of the N processes keeps rate / N: together, the rate."""
    recipients(tmp_path, 80)  # two seconds at 40/s
    with timing_server() as server:
        arrivals = ArrivalTimes(server)
        res = run_cli(
            tmp_path, "send", "r.csv", "--template", "t.txt", "--json", "--rate", "40/s",
            "--processes", "2", "--smtp", f"smtp://127.0.0.1:{server.port}",
        )  # fmt: skip
    assert summary(res)["sent"] == 80
    assert len(arrivals.times()) == 80
    assert_rate(arrivals.times(), 40)


def test_a_killed_child_is_replaced_and_its_leases_handed_back_at_once(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    """With a 300 s lease, only the parent handing back the dead children's jobs at once
    lets the new ones send them while the worker runs. Both are killed: one of them, not
    always the first, holds the message whose final reply the sink is delaying."""
    n = 40
    cwd = enqueued(n)
    slow = smtp_sink("-W", ".:1", dump=True)  # 1 s before each final reply
    cmd = worker_cmd(slow.port, "--processes", "2", "--concurrency", "4", "--lease", "300s")
    p = subprocess.Popen(cmd, cwd=cwd, env=env())
    try:
        wait_for_a_final_dot(slow, p)
        wait_until(lambda: len(children_of(p.pid)) == 2, "two delivery processes")
        first = children_of(p.pid)
        subprocess.run(["kill", "-KILL", *map(str, first)], check=True)
        wait_until(lambda: status(cwd).get("sent", 0) == n, "every message sent", 120)
        # new children took the dead ones' places
        now = children_of(p.pid)
        assert not set(first) & set(now) and len(now) == 2
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    st = status(cwd)
    assert st.get("sending", 0) == 0 and st["ambiguous"] >= 1  # what it held: counted
    everyone = {f"u{i}@example.com" for i in range(n)}
    slow.stop()
    twice_only_in_the_window(per_recipient(slow.received()), everyone, st["ambiguous"])


def test_killing_the_parent_stops_its_children_who_hand_back_their_jobs(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    cwd = enqueued(200)
    slow = smtp_sink("-W", ".:1", dump=True)
    cmd = worker_cmd(slow.port, "--processes", "2", "--concurrency", "4", "--lease", "300s")
    p = subprocess.Popen(cmd, cwd=cwd, env=env())
    try:
        wait_for_a_final_dot(slow, p)
        wait_until(lambda: len(children_of(p.pid)) == 2, "two delivery processes")
        kids = children_of(p.pid)
        p.kill()
        p.wait()
        # their parent gone, they finish what is in flight and hand the rest back
        wait_until(lambda: not any(alive(k) for k in kids), "the children to stop")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    st = status(cwd)
    assert st.get("sending", 0) == 0 and 0 < st["sent"] < 200 and st["ambiguous"] == 0
    slow.stop()
    assert len(slow.received()) == st["sent"]  # nothing in flight was abandoned


def test_a_memory_queue_cannot_be_shared(tmp_path: Path) -> None:
    recipients(tmp_path, 2)
    res = run_cli(tmp_path, "send", "r.csv", "--template", "t.txt", "--queue", "memory://",
                  "--processes", "2")  # fmt: skip
    assert res.returncode == 2 and "memory://" in res.stderr and "Traceback" not in res.stderr
