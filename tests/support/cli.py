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


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Run ``mailspool ARGS`` in a subprocess, in tmp_path, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "mailspool", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "Name, Email") -> Path:
    path.write_text(header + "\n" + "".join(f"{n}, {e}\n" for n, e in rows), encoding="utf-8")
    return path


TEMPLATE = """From: News <news@example.com>
To: {{ Email }}
Subject: Hi {{ Name }}, your update

Hi {{ Name }}, this is your update.
"""


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
