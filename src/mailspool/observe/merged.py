"""One ``/metrics`` endpoint for a command's delivery processes (``--processes N``).

Each child counts into its own registry (metrics.py), as a single process does, and
sends a :func:`snapshot` of it to its parent every second and as it ends, over its pipe
(delivery/reporting.py); a scrape of the parent asks each child for its metrics first, so
that it sees them as they are. The parent serves them merged (:class:`MergedMetrics`),
beside the queue's depth read from the queue at scrape time:

- counters and histograms are summed over the children, and what a child counted before
  it ended is kept: a child started again does not make a count go back;
- gauges are those of the children running now, summed (connections open, paused
  relays), except the 0-or-1 states (``mailspool_relay_state``,
  ``mailspool_provider_suspended``), which show the highest, and
  ``mailspool_provider_rate``: summed when each child holds its share of a provider's
  rate, the highest when the rate is held in Redis (every child shows the one rate).

Why a pipe rather than prometheus_client's multiprocess mode: that mode needs its
directory set before prometheus_client is first imported and cleaned after a crash, and
it cannot carry the gauges read at scrape time (``set_function``: open connections,
paused relays) nor the collectors of relay and provider states; a child's registry sent
whole carries everything, and the same pipe already carries its outcomes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from mailspool.observe.metrics import SCRAPE_TIMEOUT, MetricsServer, QueueDepth
from mailspool.queue import Inspection

__all__ = ["Family", "MergedMetrics", "report_metrics", "serve_merged", "snapshot"]

#: a sample: its name, labels and value
Sample = tuple[str, dict[str, str], float]
#: a metric family: name, type, help and samples, as a registry collects it
Family = tuple[str, str, str, list[Sample]]
#: seconds between a child's snapshots
EVERY = 1.0

_CUMULATIVE = frozenset({"counter", "histogram", "summary"})
_HIGHEST = frozenset({"mailspool_relay_state", "mailspool_provider_suspended"})

_Key = tuple[str, tuple[tuple[str, str], ...]]  # a sample's name and its labels


def snapshot(registry: CollectorRegistry) -> list[Family]:
    """What ``registry`` holds now, as plain data to send to the parent."""
    return [
        (m.name, m.type, m.documentation, [(s.name, dict(s.labels), s.value) for s in m.samples])
        for m in registry.collect()
    ]


async def report_metrics(send: Callable[[Any], None], registry: CollectorRegistry) -> None:
    """In a child: ``send(snapshot)`` every :data:`EVERY` seconds until cancelled."""
    while True:
        send(snapshot(registry))
        await asyncio.sleep(EVERY)


#: how long a scrape waits for the children's answers
ASK_TIMEOUT = 3.0


class MergedMetrics(Collector):
    """The children's metrics, merged as the module says. ``shared_rates``: the provider
    rates are held in Redis, so every child shows the same one. ``ask``: a coroutine
    function run on ``loop`` before each scrape, that has the children send their metrics
    and waits for them (up to a timeout it is given)."""

    def __init__(
        self,
        *,
        shared_rates: bool = False,
        ask: Callable[[float], Coroutine[Any, Any, None]] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.ask = ask
        self.loop = loop
        self._highest = _HIGHEST | ({"mailspool_provider_rate"} if shared_rates else set())
        self._live: dict[int, list[Family]] = {}
        self._kept: dict[str, dict[_Key, float]] = {}  # cumulative counts of ended children
        self._kinds: dict[str, tuple[str, str]] = {}  # family -> (type, help), first seen first
        # updated on the event loop, collected on the metrics server's thread
        self._lock = threading.Lock()

    def update(self, key: int, families: list[Family]) -> None:
        with self._lock:
            self._live[key] = families
            for name, kind, doc, _ in families:
                self._kinds.setdefault(name, (kind, doc))

    def retire(self, key: int) -> None:
        """That child has ended: its counts are kept, its gauges dropped."""
        with self._lock:
            for name, kind, _, samples in self._live.pop(key, []):
                if kind in _CUMULATIVE:
                    kept = self._kept.setdefault(name, {})
                    for sample, labels, value in samples:
                        k = (sample, tuple(sorted(labels.items())))
                        kept[k] = kept.get(k, 0.0) + value

    def _ask(self) -> None:
        """Fresh metrics from the children, when scraped from another thread than the
        loop's (the metrics server's)."""
        if self.ask is None or self.loop is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return
        future = asyncio.run_coroutine_threadsafe(self.ask(ASK_TIMEOUT), self.loop)
        try:
            future.result(SCRAPE_TIMEOUT)
        except Exception:  # stopping, or slow: what the children sent last
            future.cancel()

    def collect(self) -> Iterator[Metric]:
        self._ask()
        with self._lock:
            kinds = dict(self._kinds)
            merged = {name: dict(kept) for name, kept in self._kept.items()}
            live = [f for families in self._live.values() for f in families]
        for name, kind, _, samples in live:
            values = merged.setdefault(name, {})
            highest = kind == "gauge" and name in self._highest
            for sample, labels, value in samples:
                k = (sample, tuple(sorted(labels.items())))
                old = values.get(k)
                values[k] = value if old is None else max(old, value) if highest else old + value
        for name, (kind, doc) in kinds.items():
            metric = Metric(name, doc, kind)
            for (sample, pairs), value in merged.get(name, {}).items():
                metric.add_sample(sample, dict(pairs), value)
            yield metric


def serve_merged(host: str, port: int, queue: Inspection, merged: MergedMetrics) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port``: the queue's depth and the children's metrics;
    call from the event loop the queue runs on."""
    registry = CollectorRegistry(auto_describe=False)
    # the depth first, then the children's counts: a child asked after the depth was read
    # answers once it has counted every outcome committed by then (reporting.py), so the
    # counts are not behind the depth of the same scrape
    registry.register(QueueDepth(queue, asyncio.get_running_loop()))
    registry.register(merged)
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(httpd, thread)
