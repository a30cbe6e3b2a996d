"""``mailspool worker``: a long-running consumer. Drain, graceful stop, and a chaos run
with SIGKILLs at random moments."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailspool.testing import SMTPSink
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.processes import env


def worker_cmd(port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mailspool", "worker", "--smtp", f"smtp://127.0.0.1:{port}",
        "--log-level", "warning", *extra,
    ]  # fmt: skip


@pytest.fixture
def enqueued(tmp_path: Path, cli: Callable[..., Result]) -> Callable[[int], Path]:
    def make(n: int) -> Path:
        write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(n)])
        (tmp_path / "t.txt").write_text(TEMPLATE)
        res = cli("enqueue", "r.csv", "--template", "t.txt", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["queued"] == n
        return tmp_path

    return make


def status(cwd: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-m", "mailspool", "status", "--json"],
        cwd=cwd, capture_output=True, text=True, env=env(), check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout)[0])


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


def test_sigterm_finishes_in_flight_and_hands_back_the_rest(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    cwd = enqueued(200)
    slow = smtp_sink("-W", ".:1", dump=True)
    p = subprocess.Popen(
        worker_cmd(slow.port, "--concurrency", "4", "--lease", "300s"), cwd=cwd, env=env()
    )
    time.sleep(3)
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
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        server.close()
        for conn in accepted:
            conn.close()
        thread.join(5)


def test_a_second_signal_stops_the_worker_at_once(
    enqueued: Callable[[int], Path], silent_relay: tuple[int, list[socket.socket]]
) -> None:
    """The first SIGTERM lets messages in flight finish (here: they would wait out the
    connect timeout and the shutdown grace, 30 s each); the second exits now, 143."""
    cwd = enqueued(4)
    port, accepted = silent_relay
    log = cwd / "worker.log"
    cmd = worker_cmd(port, "--concurrency", "2")
    cmd[cmd.index("warning")] = "info"
    with log.open("wb") as out:
        p = subprocess.Popen(
            [*cmd, "--log-format", "json"], cwd=cwd, env=env(), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:  # a message is in flight
            time.sleep(0.05)
        assert accepted, log.read_text()
        p.send_signal(signal.SIGTERM)
        while "stopping: finishing" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, log.read_text()  # still waiting for the message in flight
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 143, log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_chaos_sigkill_workers_then_drain(
    enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    n = 5000
    cwd = enqueued(n)
    sink = smtp_sink(dump=True)
    rng = random.Random(1234)
    cmd = worker_cmd(sink.port, "--concurrency", "8", "--rate", "800/s", "--lease", "2s")
    workers = [subprocess.Popen(cmd, cwd=cwd, env=env()) for _ in range(2)]
    kills = 0
    deadline = time.monotonic() + 120
    # the first kill once mail flows: a worker still starting up (slower on a fresh
    # clone, with nothing compiled yet) would make every kill land before any send
    while status(cwd).get("sent", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    while kills < 12 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.5))
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        workers.append(subprocess.Popen(cmd, cwd=cwd, env=env()))
    for w in workers:
        w.send_signal(signal.SIGKILL)
        w.wait()
    assert kills >= 10
    assert status(cwd).get("sent", 0) < n, "the run finished before the workers were killed"
    final = subprocess.run(
        worker_cmd(sink.port, "--drain", "--concurrency", "16"), cwd=cwd, env=env(), timeout=120
    )
    assert final.returncode == 0
    st = status(cwd)
    assert st["sent"] == n and st.get("sending", 0) == 0 and st.get("dead", 0) == 0

    sink.stop()
    per_rcpt: dict[str, list[str]] = collections.defaultdict(list)
    for rcpts, message_id in sink.received():
        for r in rcpts:
            per_rcpt[r].append(message_id)
    assert len(per_rcpt) == n  # nothing lost
    twice = {r: ids for r, ids in per_rcpt.items() if len(ids) > 1}
    extra_copies = sum(len(ids) - 1 for ids in twice.values())
    # duplicates only inside the counted ambiguous window, with the same Message-ID
    assert extra_copies <= st["ambiguous"], (extra_copies, st["ambiguous"])
    assert all(len(set(ids)) == 1 for ids in twice.values())


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
