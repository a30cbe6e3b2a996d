"""mailspool as child processes, for the tests that run several of them (workers on many
machines, as it were): the command line, a clean environment, a set of workers, and the
delivery processes a command spawned (``--processes``)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def env() -> dict[str, str]:
    """This environment without MAILSPOOL_ settings, which would change what runs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}


def mailspool(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailspool", *args]


def worker_cmd(port: int, *extra: str) -> list[str]:
    """``mailspool worker`` on the queue in its working directory, to a relay on loopback."""
    return mailspool(
        "worker", "--smtp", f"smtp://127.0.0.1:{port}", "--log-level", "warning", *extra
    )


def status(cwd: Path) -> dict[str, int]:
    """The counts of the first campaign that ``mailspool status`` shows, run in ``cwd``."""
    out = subprocess.run(
        mailspool("status", "--json"),
        cwd=cwd, capture_output=True, text=True, env=env(), check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout)[0])


class Workers:
    """``n`` ``mailspool worker`` processes on one queue (and job store), delivering one
    campaign to a relay on loopback; the output of each goes to a file of its own."""

    def __init__(
        self,
        tmp: Path,
        queue: str,
        smtp_port: int,
        *options: str,
        campaign: str = "cluster",
        store: str | None = None,
        n: int = 3,
    ) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [tmp / f"worker{i}.log" for i in range(n)]
        where = ["--queue", queue, *(["--store", store] if store else [])]
        cmd = mailspool(
            "worker", *where, "--smtp", f"smtp://127.0.0.1:{smtp_port}",
            "--campaign", campaign, "--log-level", "warning", "--log-format", "json", *options,
        )  # fmt: skip
        for log in self.logs:
            with log.open("wb") as f:
                self.procs.append(
                    subprocess.Popen(cmd, cwd=tmp, env=env(), stdout=f, stderr=subprocess.STDOUT)
                )

    def alive(self) -> list[bool]:
        return [p.poll() is None for p in self.procs]

    def stop(self) -> list[int]:
        """SIGTERM each worker and wait for its exit status."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for i, p in enumerate(self.procs):
            try:
                codes.append(p.wait(45))
            except subprocess.TimeoutExpired:
                p.kill()
                raise AssertionError(
                    f"worker {i} ignored SIGTERM; its log ends:\n{self.log(i)[-3000:]}"
                ) from None
        return codes

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def log(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")


@pytest.fixture
def workers() -> Iterator[list[Workers]]:
    """Worker process sets a test starts; killed at its end, whatever happened."""
    started: list[Workers] = []
    yield started
    for w in started:
        w.kill()


def per_recipient(received: list[tuple[list[str], str]]) -> dict[str, list[str]]:
    """The Message-IDs each recipient got, in order, from a sink's (recipients,
    Message-ID) pairs."""
    got: dict[str, list[str]] = collections.defaultdict(list)
    for rcpts, message_id in received:
        for r in rcpts:
            got[r].append(message_id)
    return got


def twice_only_in_the_window(
    got: dict[str, list[str]], everyone: set[str], ambiguous: int, bound: int | None = None
) -> dict[str, list[str]]:
    """Assert that everyone got the message, and that those who got it twice got the same
    Message-ID, each counted as an ambiguous delivery (the duplicate window: delivered,
    not yet recorded), and no more than ``bound`` were counted. Returns those."""
    assert set(got) == everyone  # nobody missed, nobody else
    twice = {r: ids for r, ids in got.items() if len(ids) > 1}
    assert all(len(ids) == 2 and ids[0] == ids[1] for ids in twice.values()), twice
    assert len(twice) <= ambiguous, (len(twice), ambiguous)
    assert bound is None or ambiguous <= bound, (ambiguous, bound)
    return twice


def children_of(pid: int) -> list[int]:
    """The child processes ``pid`` spawned (multiprocessing's spawn: delivery, render or
    webhook processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
