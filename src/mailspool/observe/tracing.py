"""Optional OpenTelemetry tracing (``pip install 'mailspool[otel]'``).

Nothing here imports OpenTelemetry unless tracing is asked for: by the standard
``OTEL_*`` environment (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER``), which makes
mailspool install the SDK with that exporter, or by a tracer provider installed before
mailspool ran (``opentelemetry-instrument mailspool ...``). Without either,
:func:`tracing_observer` returns None and no span is ever made.

Spans per job attempt (made by :class:`TracingObserver` from the worker's observer
calls, with their real start and end times)::

    mailspool.attempt            job_id, campaign, attempt, recipient domain, outcome
    ├── mailspool.render         the message bytes for this attempt (attachments
    │                                wrapped in; templates were rendered at enqueue)
    ├── mailspool.rate_limit_wait    seconds waited on rate or concurrency limits
    └── mailspool.smtp               the SMTP transaction (reply code, stage on failure)

The API adds ``mailspool.render`` (validate and render a request's messages) and
``mailspool.enqueue`` spans inside the request.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from mailspool.delivery.classify import Verdict
from mailspool.delivery.observer import Observer
from mailspool.errors import DeliveryError
from mailspool.models import DeadReason, Job
from mailspool.transport.base import Delivery

OTEL_SWITCHES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
#: a rate-limit wait belongs to the attempt whose SMTP span starts within this (ns)
_WAIT_SLACK_NS = 50_000_000


def _disabled() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return True
    return os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"


def _asked_by_environment() -> bool:
    return any(os.environ.get(name) for name in OTEL_SWITCHES)


def _provider_set_up_already() -> bool:
    """A recording tracer provider installed before mailspool ran (by
    ``opentelemetry-instrument``, say). Libraries may import OpenTelemetry on their own
    (redis does), so an imported module alone proves nothing."""
    if "opentelemetry.trace" not in sys.modules:
        return False
    from opentelemetry import trace

    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


def wanted() -> bool:
    """Whether to trace at all; decided without importing OpenTelemetry."""
    if _disabled():
        return False
    return _asked_by_environment() or _provider_set_up_already()


def tracer() -> Any | None:
    """The mailspool tracer when tracing is wanted and recording, else None."""
    if not wanted():
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        from mailspool.observe.logs import get_logger

        get_logger().warning(
            "OTEL_* tracing variables are set but OpenTelemetry is not installed:"
            " pip install 'mailspool[otel]'"
        )
        return None
    if _asked_by_environment():
        _set_up_sdk()
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from mailspool import __version__

    return trace.get_tracer("mailspool", __version__)


def _set_up_sdk() -> None:
    """Install an SDK tracer provider with an exporter chosen by OTEL_TRACES_EXPORTER
    (``otlp``, the default, or ``console``), unless a provider is set already."""
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        return  # only the API is installed: spans stay non-recording
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return
        exporter = OTLPSpanExporter()
    service = os.environ.get("OTEL_SERVICE_NAME") or "mailspool"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def tracing_observer() -> TracingObserver | None:
    t = tracer()
    return TracingObserver(t) if t is not None else None


@contextlib.contextmanager
def span(t: Any | None, name: str, **attributes: Any) -> Iterator[None]:
    """A span around a block when ``t`` (from :func:`tracer`) is set; nothing otherwise."""
    if t is None:
        yield
        return
    with t.start_as_current_span(name, attributes=attributes):
        yield


# per sender task: (end of the last rate-limit wait in ns since the epoch, seconds waited)
_last_prepare: contextvars.ContextVar[tuple[int, float] | None] = contextvars.ContextVar(
    "mailspool_last_prepare", default=None
)
_last_wait: contextvars.ContextVar[tuple[int, float] | None] = contextvars.ContextVar(
    "mailspool_last_wait", default=None
)


class TracingObserver(Observer):
    """Spans for each attempt, made after the fact from the observer calls, with
    ``tracer`` (from :func:`tracer`).

    The worker calls ``rate_limited`` and then ``sent``/``deferred`` from the same sender
    task, so a context variable carries the wait over to the attempt that follows it.
    """

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def prepared(self, seconds: float) -> None:
        _last_prepare.set((time.time_ns(), seconds))

    def rate_limited(self, waited: float) -> None:
        _last_wait.set((time.time_ns(), waited))

    def _attempt(
        self, job: Job, elapsed: float, outcome: str, attributes: dict[str, Any]
    ) -> tuple[Any, Any, int, int]:
        from opentelemetry import trace

        end = time.time_ns()
        smtp_start = end - int(elapsed * 1e9)
        start = smtp_start
        wait = _last_wait.get()
        _last_wait.set(None)
        waited_span: tuple[int, int] | None = None
        if wait is not None and abs(smtp_start - wait[0]) <= _WAIT_SLACK_NS:
            start = min(start, wait[0] - int(wait[1] * 1e9))
            waited_span = (start, wait[0])
        prep = _last_prepare.get()
        _last_prepare.set(None)
        prep_span: tuple[int, int] | None = None
        # no slack here, unlike the wait: the worker tells of the message's preparation
        # right before each attempt, and a new connection's set-up may come in between
        if prep is not None:
            prep_span = (prep[0] - int(prep[1] * 1e9), prep[0])
            start = min(start, prep_span[0])
        attempt = self.tracer.start_span(
            "mailspool.attempt",
            start_time=start,
            attributes={
                "mailspool.job_id": job.id,
                "mailspool.campaign": job.campaign,
                "mailspool.attempt": job.attempts,
                "mailspool.recipient_domain": job.domain,
                "mailspool.outcome": outcome,
                **attributes,
            },
        )
        ctx = trace.set_span_in_context(attempt)
        if prep_span is not None:
            r = self.tracer.start_span("mailspool.render", context=ctx, start_time=prep_span[0])
            r.end(end_time=prep_span[1])
        if waited_span is not None:
            w = self.tracer.start_span(
                "mailspool.rate_limit_wait", context=ctx, start_time=waited_span[0]
            )
            w.end(end_time=waited_span[1])
        smtp = self.tracer.start_span("mailspool.smtp", context=ctx, start_time=smtp_start)
        return attempt, smtp, smtp_start, end

    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        attempt, smtp, _, end = self._attempt(job, elapsed, "sent", {})
        smtp.set_attribute("smtp.reply_code", delivery.code)
        smtp.end(end_time=end)
        attempt.end(end_time=end)

    def deferred(
        self, job: Job, err: DeliveryError, verdict: Verdict, not_before: float, elapsed: float
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        attempt, smtp, _, end = self._attempt(
            job, elapsed, "deferred", {"mailspool.failure_kind": verdict.kind}
        )
        if err.code is not None:
            smtp.set_attribute("smtp.reply_code", err.code)
        smtp.set_attribute("smtp.stage", err.stage)
        smtp.set_status(Status(StatusCode.ERROR, type(err).__name__))
        smtp.end(end_time=end)
        attempt.end(end_time=end)

    def dead(self, job: Job, reason: DeadReason, reply: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        _last_prepare.set(None)  # not carried over to the next attempt of this task
        _last_wait.set(None)

        from mailspool.observe.logs import reply_code

        code = reply_code(reply)
        attrs: dict[str, Any] = {
            "mailspool.job_id": job.id,
            "mailspool.campaign": job.campaign,
            "mailspool.attempt": job.attempts,
            "mailspool.recipient_domain": job.domain,
            "mailspool.outcome": "dead",
            "mailspool.dead_reason": reason.value,
        }
        if code is not None:
            attrs["smtp.reply_code"] = code
        attempt = self.tracer.start_span("mailspool.attempt", attributes=attrs)
        attempt.set_status(Status(StatusCode.ERROR, reason.value))
        attempt.end()
