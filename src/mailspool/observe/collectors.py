"""Collectors read at scrape time from what a worker holds: the relays of a relay set
(delivery/relays.py) and the providers of its shaping (delivery/shaping.py). Their labels
are configured names (relays, the shaping rules' providers): bounded sets."""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailspool.transport.base import Transport

if TYPE_CHECKING:
    from mailspool.delivery.shaping import Shaper

#: the states of a relay of a relay set (delivery/relays.py RelayState)
RELAY_STATES = ("up", "probing", "paused")


class RelayStates(Collector):
    """Each relay of a relay set (delivery/relays.py) the process delivers through: its
    state (up, probing, paused) and its messages sent and failed, labelled by its name
    (the configured names: a bounded set)."""

    def __init__(self, transports: weakref.WeakSet[Transport]) -> None:
        self.transports = transports

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "mailspool_relay_state", "1 for each relay's current state", labels=["relay", "state"]
        )
        messages = CounterMetricFamily(
            "mailspool_relay_messages",
            "Messages handed to each relay, by outcome (failed: the relay failed them,"
            " whether or not another then took them)",
            labels=["relay", "outcome"],
        )
        for t in list(self.transports):
            for r in getattr(t, "states", lambda: [])():
                for name in RELAY_STATES:
                    state.add_metric([r.name, name], 1.0 if r.state == name else 0.0)
                messages.add_metric([r.name, "sent"], float(r.sent))
                messages.add_metric([r.name, "failed"], float(r.failed))
        yield state
        yield messages


class ProviderStates(Collector):
    """Each provider the process shaped mail for: its adapted rate (messages a second,
    +Inf when not limited) and whether it is suspended."""

    def __init__(self, shapers: weakref.WeakSet[Shaper]) -> None:
        self.shapers = shapers

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            "mailspool_provider_rate",
            "Each provider's adapted rate, messages a second (+Inf: not limited)",
            labels=["provider"],
        )
        suspended = GaugeMetricFamily(
            "mailspool_provider_suspended", "1 while a provider is suspended", labels=["provider"]
        )
        for shaper in list(self.shapers):
            for p in shaper.states():
                rate.add_metric([p.name], math.inf if p.rate is None else p.rate)
                suspended.add_metric([p.name], 1.0 if p.suspended_for > 0 else 0.0)
        yield rate
        yield suspended
