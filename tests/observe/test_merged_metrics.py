"""One /metrics for several delivery processes (observe/merged.py): each child's registry
as it sends it, merged as a scrape of one process would show them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mailspool.errors import ConnectError
from mailspool.models import Outcome, State
from mailspool.observe.merged import Family, MergedMetrics, snapshot
from mailspool.observe.metrics import Metrics

Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SENT = ("mailspool_messages_total", (("outcome", "sent"),))
PAUSED = ("mailspool_relays_paused", ())


#: the children's observers, alive while a test runs (the metrics hold them weakly)
OBSERVERS: list[object] = []


def child(sent: int, *, paused: bool = False) -> Metrics:
    """A child's metrics after ``sent`` messages (and a relay paused now)."""
    m = Metrics()
    obs = m.observer()
    OBSERVERS.append(obs)
    obs.recorded([Outcome(f"j{i}", State.SENT) for i in range(sent)])
    if paused:
        obs.relay_paused(ConnectError("refused"), 60.0)
    return m


def text(collector: MergedMetrics | CollectorRegistry) -> str:
    registry = collector
    if isinstance(collector, MergedMetrics):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
    assert isinstance(registry, CollectorRegistry)
    return generate_latest(registry).decode()


def scrape(merged: MergedMetrics) -> Scraped:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text(merged))
        for s in family.samples
    }


def test_counts_are_summed_and_kept_when_a_child_ends() -> None:
    merged = MergedMetrics()
    a, b = child(3, paused=True), child(4)
    merged.update(1, snapshot(a.registry))
    merged.update(2, snapshot(b.registry))
    got = scrape(merged)
    assert got[SENT] == 7.0
    assert got[PAUSED] == 1.0  # a gauge: the children's now
    # child 1 ends (and is started again as child 3): its count stays, its gauge goes
    merged.retire(1)
    merged.update(3, snapshot(child(1).registry))
    got = scrape(merged)
    assert got[SENT] == 8.0
    assert got[PAUSED] == 0.0
    # a later snapshot of a running child replaces its earlier one
    b.observer().recorded([Outcome("k", State.SENT)])
    merged.update(2, snapshot(b.registry))
    assert scrape(merged)[SENT] == 9.0


def test_the_families_are_those_of_one_process() -> None:
    merged = MergedMetrics()
    merged.update(1, snapshot(child(2).registry))
    merged.update(2, snapshot(child(0).registry))
    one = {f.name for f in text_string_to_metric_families(text(Metrics().registry))}
    assert {f.name for f in text_string_to_metric_families(text(merged))} == one


def gauge(name: str, value: float) -> list[Family]:
    return [(name, "gauge", "doc", [(name, {"provider": "google"}, value)])]


def test_states_show_the_highest_and_a_shared_rate_is_not_added_up() -> None:
    merged = MergedMetrics()
    for key in (1, 2):
        merged.update(key, gauge("mailspool_provider_suspended", 1.0))
    assert scrape(merged)[("mailspool_provider_suspended", (("provider", "google"),))] == 1.0
    rate = ("mailspool_provider_rate", (("provider", "google"),))
    own, shared = MergedMetrics(), MergedMetrics(shared_rates=True)
    for key in (1, 2):
        own.update(key, gauge("mailspool_provider_rate", 4.0))
        shared.update(key, gauge("mailspool_provider_rate", 4.0))
    assert scrape(own)[rate] == 8.0  # each child its share of the provider's rate
    assert scrape(shared)[rate] == 4.0  # one rate in Redis, shown by every child
