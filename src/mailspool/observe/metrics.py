"""Prometheus metrics: an observer beside the worker loop, and a collector for the queue.

Every name starts with ``mailspool_``; every label value comes from a fixed set (states,
outcomes, reply classes, dead-letter reasons, API routes), never from user input.

==========================================  =========  ===============================
metric                                      type       labels
==========================================  =========  ===============================
mailspool_messages_total                    counter    outcome: sent, deferred, dead,
                                                       suppressed, cancelled
mailspool_dead_letters_total                counter    reason: the dead-letter reasons
mailspool_send_duration_seconds             histogram  outcome: sent, failed
mailspool_smtp_replies_total                counter    class: 2xx 4xx 5xx network
                                                       timeout tls auth other
mailspool_smtp_connections_open             gauge      -
mailspool_relays_paused                     gauge      -
mailspool_relay_pauses_total                counter    -
mailspool_relay_state                       gauge      relay, state (collectors.py)
mailspool_relay_messages_total              counter    relay, outcome (collectors.py)
mailspool_provider_throttles_total          counter    provider: the rules' names
mailspool_provider_rate                     gauge      provider (collectors.py)
mailspool_provider_suspended                gauge      provider (collectors.py)
mailspool_ambiguous_deliveries_total        counter    -
mailspool_rate_limit_wait_seconds_total     counter    -
mailspool_rate_limited_sends_total          counter    -
mailspool_queue_depth                       gauge      state: queued sending deferred
                                                       sent dead suppressed cancelled
mailspool_queue_up                          gauge      -
mailspool_api_requests_total                counter    method, route, status
mailspool_api_messages_accepted_total       counter    -
==========================================  =========  ===============================

The counters are per process (Prometheus sums them over processes); the queue depth is
read from the shared queue at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailspool.delivery.classify import Verdict
from mailspool.delivery.observer import Observer
from mailspool.errors import DeliveryError
from mailspool.models import DeadReason, Job, Outcome, State
from mailspool.observe.collectors import ProviderStates, RelayStates
from mailspool.observe.logs import reply_code
from mailspool.queue import Inspection
from mailspool.transport.base import Delivery, Transport

if TYPE_CHECKING:
    from mailspool.delivery.shaping import Shaper

OUTCOMES = ("sent", "deferred", "dead", "suppressed", "cancelled")
DURATION_OUTCOMES = ("sent", "failed")
REPLY_CLASSES = ("2xx", "4xx", "5xx", "network", "timeout", "tls", "auth", "other")
STATES = tuple(s.value for s in State)
DEAD_REASONS = (*(r.value for r in DeadReason), "other")
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other")
#: seconds; SMTP sends on a LAN take milliseconds, a slow relay seconds
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SCRAPE_TIMEOUT = 5.0


def reply_class(code: int | None, kind: str | None = None) -> str:
    """The label for an SMTP reply: its class from the code, else the failure kind."""
    if code is not None and 200 <= code < 600:
        return f"{code // 100}xx" if code // 100 != 3 else "other"
    if kind in REPLY_CLASSES:
        return kind
    return "network" if kind is None else "other"


class Metrics:
    """The metrics of one process, in their own ``registry`` (a new one by default):
    each worker counts into them through :meth:`observer`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # the *_created series only say when this process started counting: noise
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = registry or CollectorRegistry()
        self.messages = Counter(
            "mailspool_messages", "Outcomes recorded in the job store", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "mailspool_dead_letters", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.send_duration = Histogram(
            "mailspool_send_duration_seconds",
            "Time to hand one message to the relay (connection reuse included)",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.smtp_replies = Counter(
            "mailspool_smtp_replies",
            "Final replies of send attempts, by class",
            ["class"],
            registry=r,
        )
        self.open_connections = Gauge(
            "mailspool_smtp_connections_open",
            "SMTP connections open, in use or idle in the pool",
            registry=r,
        )
        self.relays_paused = Gauge(
            "mailspool_relays_paused", "Workers whose relay is paused right now", registry=r
        )
        self.relay_pauses = Counter(
            "mailspool_relay_pauses",
            "Times a relay was paused after a relay-level failure",
            registry=r,
        )
        self.ambiguous = Counter(
            "mailspool_ambiguous_deliveries",
            "Attempts whose outcome is unknown (the message may have been delivered twice)",
            registry=r,
        )
        self.rate_wait = Counter(
            "mailspool_rate_limit_wait_seconds",
            "Time sends spent waiting on rate limits",
            registry=r,
        )
        self.rate_limited = Counter(
            "mailspool_rate_limited_sends", "Sends that had to wait on a rate limit", registry=r
        )
        self.api_requests = Counter(
            "mailspool_api_requests",
            "HTTP API requests",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_accepted = Counter(
            "mailspool_api_messages_accepted",
            "Messages accepted (202) by the HTTP API",
            registry=r,
        )
        for o in OUTCOMES:
            self.messages.labels(o)
        for reason in DEAD_REASONS:
            self.dead_letters.labels(reason)
        for d in DURATION_OUTCOMES:
            self.send_duration.labels(d)
        for c in REPLY_CLASSES:
            self.smtp_replies.labels(c)
        self._transports: weakref.WeakSet[Transport] = weakref.WeakSet()
        self._observers: weakref.WeakSet[MetricsObserver] = weakref.WeakSet()
        self.open_connections.set_function(self._count_connections)
        self.relays_paused.set_function(self._count_paused)
        r.register(RelayStates(self._transports))
        self._shapers: weakref.WeakSet[Shaper] = weakref.WeakSet()
        r.register(ProviderStates(self._shapers))
        self.provider_throttles = Counter(
            "mailspool_provider_throttles",
            "Throttling replies from each provider (names from the shaping rules)",
            labelnames=["provider"],
            registry=r,
        )

    def observer(self) -> MetricsObserver:
        obs = MetricsObserver(self)
        self._observers.add(obs)
        return obs

    def watch_shaper(self, shaper: Shaper | None) -> None:
        """Show this shaper's providers (rate, suspension) in the provider gauges."""
        if shaper is not None:
            self._shapers.add(shaper)

    def watch_transport(self, transport: Transport) -> None:
        """Count this transport's open connections in ``mailspool_smtp_connections_open``."""
        self._transports.add(transport)

    def _count_connections(self) -> float:
        return float(sum(int(getattr(t, "open_connections", 0)) for t in list(self._transports)))

    def _count_paused(self) -> float:
        now = time.monotonic()
        return float(sum(1 for o in list(self._observers) if o.paused_until > now))

    def api_request(self, method: str, route: str, status: int) -> None:
        m = method if method in HTTP_METHODS else "other"
        self.api_requests.labels(m, route, str(status)).inc()


@functools.cache
def process_metrics() -> Metrics:
    """The metrics of this process: every worker's observer counts into them."""
    return Metrics()


class MetricsObserver(Observer):
    """Counts a worker's outcomes, replies, send times, limit waits and relay pauses into
    ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self.paused_until = 0.0
        self._sent = metrics.send_duration.labels("sent")
        self._failed = metrics.send_duration.labels("failed")
        self._ok = metrics.smtp_replies.labels("2xx")
        self._outcome = {o: metrics.messages.labels(o) for o in OUTCOMES}

    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        self._sent.observe(elapsed)
        if 200 <= delivery.code < 300:
            self._ok.inc()
        else:
            self.m.smtp_replies.labels(reply_class(delivery.code)).inc()

    def deferred(
        self, job: Job, err: DeliveryError, verdict: Verdict, not_before: float, elapsed: float
    ) -> None:
        self._failed.observe(elapsed)
        self.m.smtp_replies.labels(reply_class(err.code, verdict.kind)).inc()

    def dead(self, job: Job, reason: DeadReason, reply: str) -> None:
        code = reply_code(reply)
        if code is not None:
            self.m.smtp_replies.labels(reply_class(code)).inc()
        elif reason is not DeadReason.INVALID_MESSAGE:  # a failed attempt without a reply
            self.m.smtp_replies.labels("network").inc()

    def throttled(self, job: Job, provider: str, err: DeliveryError) -> None:
        self.m.provider_throttles.labels(provider).inc()
        self.m.smtp_replies.labels(reply_class(err.code)).inc()

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        self.m.relay_pauses.inc()
        self.paused_until = max(self.paused_until, time.monotonic() + delay)

    def rate_limited(self, waited: float) -> None:
        if waited > 0:
            self.m.rate_wait.inc(waited)
            self.m.rate_limited.inc()

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            state = o.state.value
            counter = self._outcome.get(state)
            if counter is not None:
                counter.inc()
            if o.state is State.DEAD:
                reason = o.reason if o.reason in DEAD_REASONS else "other"
                self.m.dead_letters.labels(reason).inc()
            if o.ambiguous:
                self.m.ambiguous.inc()


class QueueDepth(Collector):
    """``mailspool_queue_depth{state}`` and ``mailspool_queue_up``, read from the queue.

    ``refresh`` reads it on the event loop (the API does that before each scrape); a
    scrape from another thread (the worker's metrics server) asks the loop for a fresh
    reading and waits up to five seconds for it.
    """

    def __init__(self, queue: Inspection, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.loop = loop
        self._counts: dict[str, int] | None = None

    async def refresh(self) -> None:
        try:
            stats = await asyncio.wait_for(self.queue.stats(), SCRAPE_TIMEOUT)
        except Exception:  # any failure means the queue is not up
            self._counts = None
        else:
            self._counts = dict(stats.counts)

    def _refresh_from_thread(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or self.loop.is_closed():
            return  # on the loop itself: the caller refreshed before collecting
        future = asyncio.run_coroutine_threadsafe(self.refresh(), self.loop)
        try:
            future.result(SCRAPE_TIMEOUT + 1)
        except Exception:  # a timeout or a closed loop: report it as down
            future.cancel()
            self._counts = None

    def collect(self) -> Iterator[Metric]:
        self._refresh_from_thread()
        counts = self._counts
        up = GaugeMetricFamily("mailspool_queue_up", "1 when the queue answered the last scrape")
        up.add_metric([], 0.0 if counts is None else 1.0)
        yield up
        if counts is None:
            return
        depth = GaugeMetricFamily(
            "mailspool_queue_depth", "Jobs in the queue by state", labels=["state"]
        )
        for state in STATES:
            depth.add_metric([state], float(counts.get(state, 0)))
        yield depth


class _Forward(Collector):
    """Exposes another registry's metrics (the process's) in a scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def scrape_registry(metrics: Metrics, depth: QueueDepth | None) -> CollectorRegistry:
    """What one endpoint serves: the process's metrics and the queue's depth."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(metrics.registry))
    if depth is not None:
        registry.register(depth)
    return registry


class MetricsServer:
    """Prometheus' own HTTP server (``httpd``) in a daemon ``thread`` (``mailspool worker
    --metrics-port``); made by :func:`serve_metrics`, stopped by :meth:`shutdown`."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.httpd.shutdown()
            self.httpd.server_close()
        self.thread.join(5)


def serve_metrics(
    host: str,
    port: int,
    queue: Inspection,
    transport: Transport | None = None,
    shaper: Shaper | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port``; call from the event loop the queue runs on."""
    from prometheus_client import start_http_server

    metrics = process_metrics()
    if transport is not None:
        metrics.watch_transport(transport)
    metrics.watch_shaper(shaper)
    depth = QueueDepth(queue, asyncio.get_running_loop())
    httpd, thread = start_http_server(port, addr=host, registry=scrape_registry(metrics, depth))
    return MetricsServer(httpd, thread)
