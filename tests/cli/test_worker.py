"""``mailspool worker``: a long-running consumer. Drain, graceful stop, a campaign's own
retry schedule (the chaos run with SIGKILLs is in tests/e2e/test_chaos.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailspool.testing import SMTPSink
from tests.support.cli import TEMPLATE, Result, json_events, write_csv
from tests.support.processes import env, status, worker_cmd
from tests.support.smtp import wait_for_a_final_dot


def test_worker_drain_sends_everything_and_exits(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    cwd = enqueued(300)
    sink = smtp_sink(dump=True)
    p = subprocess.run(worker_cmd(sink.port, "--drain"), cwd=cwd, env=env(), timeout=60)
    assert p.returncode == 0
    st = status(cwd)
    assert st["sent"] == 300
    assert len(sink.received()) == 300


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_finishes_in_flight_and_hands_back_the_rest(
    processes: int, enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    """The first SIGTERM (forwarded to the delivery processes, with --processes 2)."""
    cwd = enqueued(200)
    slow = smtp_sink("-W", ".:1", dump=True)
    cmd = worker_cmd(slow.port, "--concurrency", "4", "--lease", "300s")
    p = subprocess.Popen([*cmd, "--processes", str(processes)], cwd=cwd, env=env())
    wait_for_a_final_dot(slow, p)  # sending: the first messages wait for their reply
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    st = status(cwd)
    # nothing stays leased: the unsent jobs were handed back without waiting 300 s
    assert st.get("sending", 0) == 0
    assert 0 < st["sent"] < 200
    # what the relay accepted was recorded: no in-flight message was abandoned
    assert len(slow.received()) == st["sent"]


@pytest.fixture
def silent_relay() -> Iterator[tuple[int, list[socket.socket]]]:
    """A relay that accepts connections and never says a word: every send waits for its
    greeting (30 s) while it is held open."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # the accept loop sees the end of the test (closing the socket
    # does not wake an accept() waiting on it: the join below would wait out its timeout)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(5)
        server.close()
        for conn in accepted:
            conn.close()


def test_sigterm_hands_back_at_once_the_sends_waiting_for_a_connection(
    enqueued: Callable[[int], Path], silent_relay: tuple[int, list[socket.socket]]
) -> None:
    """The relay never greets, so no transaction begins: the first SIGTERM hands every
    job back untried, where waiting out the greeting would have charged each an attempt
    (deferred)."""
    cwd = enqueued(4)
    port, accepted = silent_relay
    cmd = worker_cmd(port, "--concurrency", "2", "--lease", "300s", "--connect-timeout", "3s")
    p = subprocess.Popen(cmd, cwd=cwd, env=env())
    try:
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:  # a send waits for a greeting
            time.sleep(0.05)
        assert accepted
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    st = status(cwd)
    assert st["queued"] == 4 and st.get("deferred", 0) == st.get("sending", 0) == 0
    assert st.get("ambiguous", 0) == 0


def test_a_second_signal_cuts_short_the_messages_under_way(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    """The first SIGTERM lets the messages under way finish (here: they would wait 30 s
    for the relay's answer to their final dot); the second cuts them short, recorded as
    interrupted (ambiguous), hands the rest back, logs what it did and exits 143."""
    n = 20
    cwd = enqueued(n)
    slow = smtp_sink("-W", ".:30")
    log = cwd / "worker.log"
    cmd = worker_cmd(slow.port, "--concurrency", "2", "--lease", "300s")
    cmd[cmd.index("warning")] = "info"
    with log.open("wb") as out:
        p = subprocess.Popen(
            [*cmd, "--log-format", "json"], cwd=cwd, env=env(), stdout=out, stderr=out
        )
    try:
        wait_for_a_final_dot(slow, p)
        p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "stopping: finishing" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, log.read_text()  # still waiting for the messages under way
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 143, log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = log.read_text()
    st = status(cwd)
    cut = st["ambiguous"]
    assert 1 <= cut <= 2 and st["deferred"] == cut, st  # at most one per sender
    assert st.get("sending", 0) == 0 and st["queued"] == n - cut
    (stopped,) = json_events(text, "worker stopped")
    assert stopped["pending"] == n and stopped["ambiguous"] == cut
    assert "stopping now" in text and "to resume" in text


def test_campaign_retry_schedule_overrides_the_workers(
    tmp_path: Path, cli: Callable[..., Result], smtp_sink: Callable[..., SMTPSink]
) -> None:
    write_csv(tmp_path / "r.csv", [("a", "a@example.com"), ("b", "b@example.com")])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli(
        "enqueue", "r.csv", "--template", "t.txt", "--retry-first", "0.5s", "--max-attempts", "2"
    )
    assert res.returncode == 0, res.stderr
    soft = smtp_sink("-r", "data")
    # the worker's own schedule (first retry in 5 minutes, no attempt limit) is not used
    for _ in range(2):
        p = subprocess.run(worker_cmd(soft.port, "--drain"), cwd=tmp_path, env=env(), timeout=60)
        assert p.returncode == 0
        time.sleep(0.7)
    dead = json.loads(cli("dlq", "list", "--json").stdout)
    assert {d["reason"] for d in dead} == {"max_attempts"} and len(dead) == 2
    assert all(d["attempts"] == 2 for d in dead)
