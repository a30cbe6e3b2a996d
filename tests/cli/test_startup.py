"""What a command imports before it does any work (issue 17: the CPU of a start is mostly
imports; bench/bench_start.py measures it). Each test runs mailspool in a fresh
interpreter and lists the modules loaded at a point: a heavy module back on the way
fails here, with its name. No times are asserted: speed is the benchmark's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.cli import TEMPLATE, write_csv

#: what neither --help nor send before its first row needs: the extras' clients, the
#: API, metrics, tracing, DKIM, and the parts of delivery a default send does not use
#: (several processes, several relays, webhooks, the render pool, returned mail)
NEVER_AT_START = (
    "pydantic", "rich", "redis", "aio_pika", "asyncpg", "prometheus_client", "fastapi",
    "uvicorn", "opentelemetry", "dkim", "cryptography", "multiprocessing",
    "importlib.resources", "urllib.request", "mailspool.api", "mailspool.observe.metrics",
    "mailspool.delivery.supervisor", "mailspool.cli.supervised", "mailspool.delivery.relays",
    "mailspool.webhooks.dispatcher", "mailspool.intake.pool", "mailspool.message.dkim",
    "mailspool.message.verp", "mailspool.queue.returns", "mailspool.transport.oauth2",
)  # fmt: skip
#: what --help needs none of either: the event loop, the settings, logging, templates
NOT_FOR_HELP = (
    "asyncio", "uvloop", "structlog", "jinja2", "sqlite3", "email_validator", "aiosmtplib",
    "mailspool.config", "mailspool.queue", "mailspool.observe", "mailspool.delivery",
    "mailspool.message", "mailspool.intake", "mailspool.transport", "mailspool.cli.send",
)  # fmt: skip
#: what send loads when it first needs it, after its first row: address validation (the
#: first row's), SMTP (the first connection), the shipped shaping rules (the first
#: message), HTML to text (an HTML part)
AFTER_THE_FIRST_ROW = (
    "email_validator", "aiosmtplib", "mailspool.transport.session", "tomllib", "html.parser",
)  # fmt: skip

#: run in the child: ``mailspool ARGV`` until the source file named FIRST is opened,
#: then print the modules loaded and leave (the CSV source opens it with Path.open)
PROBE = """
import json, os, pathlib, sys
argv, first = json.loads(sys.argv[1]), sys.argv[2]
real_open = pathlib.Path.open

def probe(self, *args, **kwargs):
    if self.name == first:
        print(json.dumps({"at": "first", "modules": sorted(sys.modules)}), flush=True)
        os._exit(0)
    return real_open(self, *args, **kwargs)

pathlib.Path.open = probe
from mailspool.cli.parser import main

try:
    main(argv)
except SystemExit:
    pass
print(json.dumps({"at": "end", "modules": sorted(sys.modules)}), flush=True)
"""


def modules_loaded(cwd: Path, argv: list[str], first: str = "") -> set[str]:
    """The modules loaded by ``mailspool ARGV`` when it opens the file ``first`` (which
    it must), or when it ends (no ``first``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), first],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout.strip().splitlines()[-1])
    assert found["at"] == ("first" if first else "end"), res.stderr
    return set(found["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` loaded, a package counting with any module of it."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_help_imports_no_more_than_the_parser(tmp_path: Path) -> None:
    modules = modules_loaded(tmp_path, ["--help"])
    assert "mailspool.cli.parser" in modules
    assert loaded(modules, NEVER_AT_START + NOT_FOR_HELP) == []


def test_send_reaches_its_first_row_without_what_it_does_not_use(tmp_path: Path) -> None:
    write_csv(tmp_path / "r.csv", [("ann", "ann@example.com")])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    argv = ["send", "r.csv", "--template", "t.txt", "--smtp", "smtp://127.0.0.1:1",
            "--queue", "sqlite:///q.db"]  # fmt: skip
    modules = modules_loaded(tmp_path, argv, first="r.csv")  # stopped there: nothing sent
    assert "mailspool.intake.sources.csv" in modules
    assert loaded(modules, NEVER_AT_START + AFTER_THE_FIRST_ROW) == []
