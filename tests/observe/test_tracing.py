"""Optional OpenTelemetry tracing: spans per attempt from a real worker, and nothing at
all (not even an import) when tracing is not asked for or not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mailspool.delivery.limits import LimitSettings
from mailspool.observe.tracing import TracingObserver
from mailspool.queue import MemoryQueue
from mailspool.testing import RecordingSMTPServer
from tests.support.delivery import run_worker
from tests.support.jobs import HAND_MADE, make_job

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MAILSPOOL_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean | env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def exporter_and_observer() -> tuple[Any, TracingObserver]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, TracingObserver(provider.get_tracer("test"))


async def test_a_span_per_attempt_with_rate_wait_and_smtp_children() -> None:
    exporter, observer = exporter_and_observer()
    queue = MemoryQueue()
    await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(8)])
    with RecordingSMTPServer(unchecked=HAND_MADE) as server:
        await run_worker(queue, server.port, [observer], LimitSettings(rate=40))
    spans = exporter.get_finished_spans()
    attempts = [s for s in spans if s.name == "mailspool.attempt"]
    assert len(attempts) == 8
    by_parent: dict[int, list[str]] = {}
    for s in spans:
        if s.parent is not None:
            by_parent.setdefault(s.parent.span_id, []).append(s.name)
    for a in attempts:
        assert a.attributes["mailspool.outcome"] == "sent"
        assert a.attributes["mailspool.campaign"] == "c"
        assert a.attributes["mailspool.recipient_domain"] == "example.com"
        assert "mailspool.smtp" in by_parent[a.context.span_id]
        assert "mailspool.render" in by_parent[a.context.span_id]
    smtp = [s for s in spans if s.name == "mailspool.smtp"]
    assert all(s.attributes["smtp.reply_code"] == 250 for s in smtp)
    assert all(s.parent is not None for s in spans if s.name != "mailspool.attempt")
    # at 40/s, eight sends cannot all go at once: some attempts waited, inside their span
    waits = [s for s in spans if s.name == "mailspool.rate_limit_wait"]
    assert waits
    for w in waits:
        parent = next(a for a in attempts if a.context.span_id == w.parent.span_id)
        assert parent.start_time <= w.start_time <= w.end_time <= parent.end_time
    # the message is built first, then the wait, then the SMTP session
    for r in (s for s in spans if s.name == "mailspool.render"):
        parent = next(a for a in attempts if a.context.span_id == r.parent.span_id)
        assert parent.start_time == r.start_time <= r.end_time <= parent.end_time


async def test_failed_attempts_are_error_spans() -> None:
    from opentelemetry.trace import StatusCode

    exporter, observer = exporter_and_observer()
    queue = MemoryQueue()
    await queue.enqueue(
        [
            make_job(1, to="later@example.com", campaign="c", deliverable=True),
            make_job(2, to="gone@example.com", campaign="c", deliverable=True),
        ]
    )
    with RecordingSMTPServer(unchecked=HAND_MADE) as server:
        server.handler.rcpt_replies["later@example.com"] = "451 4.2.1 try later"
        server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"
        await run_worker(queue, server.port, [observer])
    spans = {
        (s.name, s.attributes.get("mailspool.outcome")): s for s in exporter.get_finished_spans()
    }
    deferred = spans[("mailspool.attempt", "deferred")]
    dead = spans[("mailspool.attempt", "dead")]
    assert dead.status.status_code is StatusCode.ERROR
    assert dead.attributes["mailspool.dead_reason"] == "rejected_permanent"
    assert dead.attributes["smtp.reply_code"] == 550
    smtp = next(
        s for s in exporter.get_finished_spans()
        if s.name == "mailspool.smtp" and s.parent.span_id == deferred.context.span_id
    )  # fmt: skip
    assert smtp.status.status_code is StatusCode.ERROR and smtp.attributes["smtp.reply_code"] == 451


def test_nothing_is_imported_without_otel_variables() -> None:
    res = python(
        """
        import sys
        from mailspool.config import Settings
        from mailspool.wiring import observers
        found = observers(Settings())
        assert not any(type(o).__name__ == "TracingObserver" for o in found), found
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
        print("ok")
        """
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_a_library_importing_opentelemetry_does_not_turn_tracing_on() -> None:
    res = python(
        """
        import opentelemetry.trace  # as redis does on its own
        from mailspool.observe.tracing import tracer, wanted
        assert not wanted() and tracer() is None
        print("ok")
        """
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_otel_variables_without_the_package_only_warn() -> None:
    res = python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from mailspool.observe.logs import configure
        configure("info", "json")
        from mailspool.observe.tracing import tracing_observer
        assert tracing_observer() is None
        print("ok")
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert "pip install 'mailspool[otel]'" in res.stderr


def test_otel_variables_install_the_sdk() -> None:
    res = python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from mailspool.observe.tracing import tracer, tracing_observer
        assert tracing_observer() is not None
        assert isinstance(trace.get_tracer_provider(), TracerProvider)
        with tracer().start_as_current_span("probe"):
            pass
        print("ok")
        """,
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="mailspool-test",
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert '"name": "probe"' in res.stderr and "mailspool-test" in res.stderr
    off = python(
        "from mailspool.observe.tracing import tracer; assert tracer() is None; print('ok')",
        OTEL_TRACES_EXPORTER="console",
        OTEL_SDK_DISABLED="true",
    )
    assert off.stdout.strip() == "ok", off.stderr
