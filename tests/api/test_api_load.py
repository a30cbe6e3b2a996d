"""The API load test: bench/bench_api.py POSTs from its own process into ``mailspool
serve`` with the SQLite queue; every 202 must end as sent and reach the SMTP server, each
Message-ID once. 10,000 messages one per request (slow), and smaller runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def bench(tmp_path: Path, *args: str, timeout: float = 60) -> dict[str, object]:
    """Run the benchmark; ``timeout`` bounds the wait for every message to be sent."""
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_api.py"), "--sink", "aiosmtpd",
         "--json", str(out), "--timeout", str(timeout), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=2 * timeout, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    report: dict[str, object] = json.loads(out.read_text())
    return report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_10000_messages_one_per_request_are_each_sent_once(tmp_path: Path) -> None:
    """The issue's load test: 10,000 POSTs of one message from a second process."""
    r = bench(tmp_path, "-n", "10000", "--connections", "32", timeout=120)
    print(
        f"\n10,000 messages, one per request: {r['requests_per_s']} requests/s,"
        f" {r['messages_per_s_end_to_end']} messages/s end to end,"
        f" p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms"
    )
    assert r["statuses"] == {"202": 10000}
    assert r["distinct_ids"] == r["sent"] == 10000 and r["dead"] == r["pending"] == 0
    # every job's Message-ID reached the sink, and none twice
    assert r["delivered"] == 10000
    assert r["missing_at_sink"] == r["delivered_twice"] == 0
    assert r["ok"] is True


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
