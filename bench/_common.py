"""Shared helpers for the benchmark scripts: fixtures, child processes, formatting.

Not part of the mailspool package; the scripts import it from their own directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

FIRST_NAMES = (
    "john", "mary", "alexandre", "barbara", "chen", "fatima", "olga", "pedro", "aiko", "kwame",
    "ingrid", "rahul", "sofia", "tomasz", "amara", "liam", "noor", "mateo", "yuki", "zanele",
)  # fmt: skip
LAST_NAMES = ("jones", "wilson", "garcia", "nguyen", "muller", "rossi", "kowalski", "okafor")
# a real list has a few big domains and a long tail; 64 distinct domains here
DOMAINS = tuple(
    ["example.com", "example.org", "example.net", "mail.example.com"]
    + [f"corp{i}.example.com" for i in range(60)]
)
CSV_CHUNK_ROWS = 10_000


def csv_rows(n: int) -> Iterator[str]:
    """``n`` recipient lines (``Name, Email``) with distinct addresses."""
    nf, nl, nd = len(FIRST_NAMES), len(LAST_NAMES), len(DOMAINS)
    for i in range(n):
        first = FIRST_NAMES[i % nf]
        last = LAST_NAMES[(i // nf) % nl]
        domain = DOMAINS[(i * 7) % nd]
        yield f"{first}, {first}.{last}{i}@{domain}\n"


def write_csv(path: Path, n: int) -> int:
    """Write the header and ``n`` rows, streamed in chunks; returns the file size."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("Name, Email\n")
        chunk: list[str] = []
        for line in csv_rows(n):
            chunk.append(line)
            if len(chunk) >= CSV_CHUNK_ROWS:
                f.writelines(chunk)
                chunk = []
        f.writelines(chunk)
    return path.stat().st_size


def write_template(path: Path, body_bytes: int = 2048) -> None:
    """A template with Jinja variables in From/To/Subject and a body of about ``body_bytes``
    (as ``smtp-source -l``, which counts body bytes only)."""
    head = (
        "From: Bench Sender <bench@example.com>\n"
        "To: {{ Name | title }} <{{ Email }}>\n"
        "Subject: Your monthly update, {{ Name | title }}\n"
        "\n"
        "Hello {{ Name | title }},\n\n"
        "This message was sent to {{ Email }} by the mailspool benchmark.\n\n"
    )
    filler = "The quick brown fox jumps over the lazy dog, again and again, and again. 0123456\n"
    lines: list[str] = []
    size = len(head) - head.index("\n\n") - 2  # body bytes so far (variables unexpanded)
    while size + len(filler) <= body_bytes - 16:
        lines.append(filler)
        size += len(filler)
    path.write_text(head + "".join(lines) + "-- \nmailspool bench\n", encoding="utf-8")


def find_mailspool(explicit: str | None) -> str:
    """The mailspool executable: --mailspool, else beside this interpreter, else on PATH."""
    if explicit:
        return explicit
    sibling = Path(sys.executable).parent / "mailspool"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which("mailspool")
    if found is None:
        raise SystemExit("mailspool executable not found; pass --mailspool PATH")
    return found


def child_env() -> dict[str, str]:
    """The environment without MAILSPOOL_* variables, so only the flags given count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}


@dataclass
class ChildResult:
    cmd: list[str]
    rc: int
    wall: float
    user: float
    system: float
    maxrss_kb: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def last_json(self) -> dict[str, Any] | None:
        """The last stdout line parsed as a JSON object (the --json summary)."""
        lines = self.stdout.strip().splitlines()
        if not lines:
            return None
        try:
            value = json.loads(lines[-1])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def run_child(
    cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> ChildResult:
    """Run ``cmd`` to completion; wall clock from just before the fork to the reap, and the
    child's own resource usage (os.wait4), so CPU and peak RSS are this child's alone.
    Killed after ``timeout`` seconds. ``env``: variables added to child_env()."""
    out_path, err_path = cwd / ".child.out", cwd / ".child.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=err, env={**child_env(), **(env or {})}
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): do not leave the child behind
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    result = ChildResult(
        cmd=cmd,
        rc=proc.returncode,
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,  # kilobytes on Linux
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=expired.is_set(),
    )
    out_path.unlink()
    err_path.unlink()
    return result


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the sink and remove temp files."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
