"""``mailspool`` run as a user runs it (the ``cli`` fixture), and what such runs are given
and print: a recipients CSV, a template, JSON log events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """``mailspool ARGS`` in a subprocess, in ``cwd``, with no MAILSPOOL_* variable but
    those of ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    full_env.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "mailspool", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Run ``mailspool ARGS`` in a subprocess, in tmp_path, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        return run_cli(tmp_path, *args, env=env, timeout=timeout)

    return run


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "Name, Email") -> Path:
    path.write_text(header + "\n" + "".join(f"{n}, {e}\n" for n, e in rows), encoding="utf-8")
    return path


TEMPLATE = """From: News <news@example.com>
To: {{ Email }}
Subject: Hi {{ Name }}, your update

Hi {{ Name }}, this is your update.
"""


@pytest.fixture
def enqueued(tmp_path: Path, cli: Callable[..., Result]) -> Callable[[int], Path]:
    """``enqueued(n)``: ``mailspool enqueue`` queues n recipients in tmp_path (its SQLite
    queue there); returns tmp_path, where the worker is to run."""

    def make(n: int) -> Path:
        write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(n)])
        (tmp_path / "t.txt").write_text(TEMPLATE)
        res = cli("enqueue", "r.csv", "--template", "t.txt", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["queued"] == n
        return tmp_path

    return make


def json_events(text: str, name: str) -> list[dict[str, Any]]:
    """The JSON log events called ``name`` among the lines of ``text``."""
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            found.append(event)
    return found
