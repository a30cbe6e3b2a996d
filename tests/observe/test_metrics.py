"""Prometheus metrics: the observer fed by a real worker (aiosmtpd and a scripted relay),
the queue-depth collector, fixed label sets, and ``mailspool worker --metrics-port``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mailspool.delivery.classify import Action, Verdict
from mailspool.delivery.limits import LimitSettings
from mailspool.errors import ConnectError, ReplyError
from mailspool.models import CampaignStats, DeadReason, Outcome, State
from mailspool.observe.metrics import (
    DEAD_REASONS,
    REPLY_CLASSES,
    STATES,
    Metrics,
    QueueDepth,
    reply_class,
    scrape_registry,
)
from mailspool.queue import MemoryQueue
from mailspool.testing import LineServer, RecordingSMTPServer, free_port, wait_listening
from mailspool.transport.base import Delivery
from tests.support.cli import write_csv
from tests.support.delivery import run_worker
from tests.support.jobs import HAND_MADE, make_job


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_reply_classes() -> None:
    assert reply_class(250) == "2xx"
    assert reply_class(451) == "4xx"
    assert reply_class(550) == "5xx"
    assert reply_class(None, "timeout") == "timeout"
    assert reply_class(None) == "network"
    assert reply_class(354) == "other"
    assert reply_class(None, "anything else") == "other"
    assert set(REPLY_CLASSES) >= {"2xx", "4xx", "5xx", "network", "timeout", "tls", "auth"}


async def test_a_worker_counts_sends_replies_rates_and_dead_letters() -> None:
    m = Metrics(CollectorRegistry())
    queue = MemoryQueue()
    await queue.enqueue(
        [make_job(i, campaign="c", deliverable=True) for i in range(12)]
        + [make_job(99, to="gone@example.com", campaign="c", deliverable=True)]
    )
    with RecordingSMTPServer(unchecked=HAND_MADE) as server:
        server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
        await run_worker(queue, server.port, [m.observer()], LimitSettings(rate=40))
    assert value(m, "mailspool_messages_total", outcome="sent") == 12
    assert value(m, "mailspool_messages_total", outcome="dead") == 1
    assert value(m, "mailspool_dead_letters_total", reason="rejected_permanent") == 1
    assert value(m, "mailspool_smtp_replies_total", **{"class": "2xx"}) == 12
    assert value(m, "mailspool_smtp_replies_total", **{"class": "5xx"}) == 1
    assert value(m, "mailspool_send_duration_seconds_count", outcome="sent") == 12
    # 13 sends at 40/s: some had to wait for the rate limit
    assert value(m, "mailspool_rate_limited_sends_total") > 0
    assert value(m, "mailspool_rate_limit_wait_seconds_total") > 0


async def test_a_paused_relay_is_counted_and_shown() -> None:
    m = Metrics(CollectorRegistry())
    queue = MemoryQueue()
    await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(3)])
    with LineServer(greeting="421 4.3.2 try again later") as relay:
        await run_worker(queue, relay.port, [m.observer()])
    assert value(m, "mailspool_relay_pauses_total") == 1
    assert value(m, "mailspool_smtp_replies_total", **{"class": "4xx"}) >= 1
    # the jobs are handed back to wait for the relay, not charged an outcome of their own
    assert value(m, "mailspool_messages_total", outcome="deferred") == 0
    assert value(m, "mailspool_messages_total", outcome="sent") == 0
    st = await queue.stats()
    assert st.counts == {"deferred": 3}
    assert st.last_error == "relay paused: 421 4.3.2 try again later"


def test_label_values_come_from_fixed_sets() -> None:
    m = Metrics(CollectorRegistry())
    obs = m.observer()
    job = make_job(1, campaign="c", deliverable=True)
    obs.recorded(
        [
            Outcome(job.id, State.DEAD, "x", reason="user supplied <script>"),
            Outcome(job.id, State.SENT, "250 ok", ambiguous=True),
        ]
    )
    obs.dead(job, DeadReason.EXPIRED, "connection reset")
    obs.sent(job, Delivery(251, "forwarded"), 0.01)
    obs.deferred(job, ConnectError("reset", stage="dot"), _verdict("network"), 0.0, 0.2)
    m.api_request("BREW", "/v1/messages", 418)
    assert value(m, "mailspool_dead_letters_total", reason="other") == 1
    assert value(m, "mailspool_ambiguous_deliveries_total") == 1
    assert (
        value(m, "mailspool_api_requests_total", method="other", route="/v1/messages", status="418")
        == 1
    )
    text = generate_latest(m.registry).decode()
    for line in text.splitlines():
        if line.startswith("mailspool_dead_letters_total{"):
            assert line.split('"')[1] in DEAD_REASONS
        if line.startswith("mailspool_smtp_replies_total{"):
            assert line.split('"')[1] in REPLY_CLASSES
    assert "<script>" not in text


def _verdict(kind: str) -> Verdict:
    return Verdict(Action.RETRY, kind=kind)


def test_relays_paused_is_a_gauge_of_paused_workers() -> None:
    m = Metrics(CollectorRegistry())
    a, b = m.observer(), m.observer()
    assert value(m, "mailspool_relays_paused") == 0
    a.relay_paused(ReplyError("busy", code=421, stage="greeting"), 3600)
    assert value(m, "mailspool_relays_paused") == 1
    b.relay_paused(ReplyError("busy", code=421, stage="greeting"), 3600)
    assert value(m, "mailspool_relays_paused") == 2
    assert value(m, "mailspool_relay_pauses_total") == 2


async def test_queue_depth_is_read_at_scrape_time() -> None:
    queue = MemoryQueue()
    await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(5)])
    depth = QueueDepth(queue, asyncio.get_running_loop())
    registry = scrape_registry(Metrics(CollectorRegistry()), depth)
    # a scrape from another thread (the worker's metrics server) asks the loop for a reading
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert 'mailspool_queue_depth{state="queued"} 5.0' in text
    assert "mailspool_queue_up 1.0" in text
    assert set(STATES) == {
        "queued", "sending", "sent", "deferred", "dead", "suppressed", "cancelled"
    }  # fmt: skip

    class Broken(MemoryQueue):
        async def stats(self, campaign: str | None = None) -> CampaignStats:
            raise OSError("gone")

    down = QueueDepth(Broken(), asyncio.get_running_loop())
    await down.refresh()
    text = generate_latest(scrape_registry(Metrics(CollectorRegistry()), down)).decode()
    assert "mailspool_queue_up 0.0" in text and "mailspool_queue_depth" not in text


@pytest.mark.parametrize("processes", [1, 2])
def test_worker_serves_metrics_on_its_port(
    processes: int, tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    """With --processes 2, one endpoint for both: their counts summed, as fresh as the
    queue's depth in the same scrape."""
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(25)])
    (tmp_path / "t.txt").write_text("From: a@example.com\nTo: {{ Email }}\nSubject: hi\n\nx\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    queue = f"sqlite:///{tmp_path}/q.db"
    enq = subprocess.run(
        [sys.executable, "-m", "mailspool", "enqueue", "r.csv", "--template", "t.txt",
         "--queue", queue],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enq.returncode == 0, enq.stderr
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailspool", "worker", "--queue", queue, "--smtp",
         f"smtp://127.0.0.1:{smtpd.port}", "--metrics-port", str(port), "--log-format", "json",
         "--processes", str(processes)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert wait_listening(port), "the metrics endpoint did not come up"
        deadline = time.monotonic() + 30
        while True:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            if 'mailspool_queue_depth{state="sent"} 25.0' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert 'mailspool_messages_total{outcome="sent"} 25.0' in text
        assert "mailspool_queue_up 1.0" in text
        assert "mailspool_smtp_connections_open" in text
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert len(smtpd.messages) == 25


def test_metrics_port_binds_loopback_only(tmp_path: Path) -> None:
    from mailspool.observe.metrics import serve_metrics

    async def start() -> tuple[str, int]:
        server = serve_metrics("127.0.0.1", 0, MemoryQueue())
        try:
            host, port = server.httpd.server_address[:2]
            return str(host), int(port)
        finally:
            server.shutdown()

    host, port = asyncio.run(start())
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # shut down with the worker
