"""The API load test at a size the suite can afford: bench/bench_api.py (the same script
that measures 10,000 messages) POSTs from its own process into ``mailspool serve`` with
the SQLite queue; every 202 must end as sent and reach the SMTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_api.py"), "--sink", "aiosmtpd",
         "--json", str(out), "--timeout", "60", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_every_accepted_message_is_sent_one_per_request(tmp_path: Path) -> None:
    r = bench(tmp_path, "-n", "600", "--connections", "16")
    assert r["ok"] is True
    assert r["statuses"] == {"202": 600}
    assert r["distinct_ids"] == r["sent"] == r["delivered"] == 600
    assert r["dead"] == 0 and r["missing_at_sink"] == 0 and r["delivered_twice"] == 0


def test_every_accepted_message_is_sent_in_batches(tmp_path: Path) -> None:
    r = bench(tmp_path, "-n", "1000", "--batch", "50", "--connections", "4", "--workers", "2")
    assert r["ok"] is True
    assert r["requests"] == 20 and r["statuses"] == {"202": 20}
    assert r["sent"] == r["delivered"] == 1000
