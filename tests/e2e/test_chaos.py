"""A chaos run: ``mailspool worker`` processes killed with SIGKILL at random moments while
they deliver, then a draining worker: every recipient gets the message, and gets it twice
only inside the counted ambiguous window, with the same Message-ID. With ``--processes
2``, one worker whose delivery processes (restarted by it) or itself are killed."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.testing import SMTPSink
from tests.support.processes import children_of, env, status, worker_cmd


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_chaos_sigkill_workers_then_drain(
    processes: int, enqueued: Callable[[int], Path], smtp_sink: Callable[..., SMTPSink]
) -> None:
    n = 5000
    cwd = enqueued(n)
    sink = smtp_sink(dump=True)
    rng = random.Random(1234)
    cmd = worker_cmd(
        sink.port, "--concurrency", "8", "--rate", "800/s", "--lease", "2s",
        "--processes", str(processes),
    )  # fmt: skip
    # two workers of one process each, or one worker of two delivery processes
    workers = [subprocess.Popen(cmd, cwd=cwd, env=env()) for _ in range(3 - processes)]
    kills = 0
    deadline = time.monotonic() + 120
    # the first kill once mail flows: a worker still starting up (slower on a fresh
    # clone, with nothing compiled yet) would make every kill land before any send
    while status(cwd).get("sent", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    while kills < 12 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.5))
        if processes > 1 and rng.random() < 0.75:  # a delivery process: its worker restarts it
            kids = children_of(workers[0].pid)
            if kids:
                os.kill(rng.choice(kids), signal.SIGKILL)
                kills += 1
            continue
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        workers.append(subprocess.Popen(cmd, cwd=cwd, env=env()))
    for w in workers:
        for kid in children_of(w.pid):
            os.kill(kid, signal.SIGKILL)
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
