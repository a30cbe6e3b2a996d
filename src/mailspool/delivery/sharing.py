"""How the limits of one command are shared out among its delivery processes
(``--processes N``), so that N processes together keep to what one would.

A limit held in Redis (``--limits-redis``, or the Redis of the queue or store) is one
schedule for every process using it: it is left as it is. A limit held in a process
would hold N times over, so each process gets its share:

=============================================  =========================================
limit                                          each of N processes keeps
=============================================  =========================================
``--rate``, ``--domain-rate``,                 rate / N, unless held in Redis
``--default-domain-rate``
``--domain-concurrency``                       floor(C / N), unless held in Redis
a provider's ``connections``                   floor(C / N): always (counted per process)
a ``[[relay]]``'s ``rate``                     rate / N: always (paced per process)
a ``[[relay]]``'s ``concurrency``              floor(C / N): always
=============================================  =========================================

A provider's adapted rate is not divided: it is one for the whole command, held in
Redis or, without Redis, by the parent process, whose children take their rate slots
and report their throttling replies over their pipes (reporting.py ``ParentLanes``).

So that each process has at least one slot of each concurrency it shares, N is at most
the smallest of them (:func:`most_processes`). How many processes by default is
:func:`automatic`: one per CPU, fewer when ``--rate`` makes more pointless.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.providers import Providers

if TYPE_CHECKING:  # the relays of a set: delivery/relays.py is not imported for one relay
    from mailspool.delivery.relays import RelaySpec

__all__ = [
    "PROCESS_RATE",
    "automatic",
    "cpus",
    "most_processes",
    "share_limits",
    "share_providers",
    "share_relay",
]

#: messages a second one delivery process is given before another one helps. One
#: process sends about 6,000 a second to a sink on loopback and fewer to a real relay;
#: under this rate a second process only adds its start-up and its share of the queue
PROCESS_RATE = 1000.0


def cpus() -> int:
    """The CPUs this process may run on (its affinity, as ``os.process_cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def automatic(cores: int, rate: float | None) -> int:
    """The default number of delivery processes: one per core, and with a global rate
    one per :data:`PROCESS_RATE` messages a second of it (``--rate 300/s``: one)."""
    if rate is None:
        return max(1, cores)
    return max(1, min(cores, math.ceil(rate / PROCESS_RATE)))


def most_processes(
    limits: LimitSettings | None, providers: Providers | None, relays: Iterable[RelaySpec]
) -> int | None:
    """The most processes that can share these concurrencies with a slot of each for
    every process (None: no bound). ``limits``: the limits held in the process (None
    when Redis holds them); ``providers``: the shaping rules (None: no shaping)."""
    bounds = [s.concurrency for s in relays if s.concurrency]
    if limits is not None and limits.domain_concurrency:
        bounds.append(limits.domain_concurrency)
    if providers is not None:
        bounds += [p.connections for p in providers.providers if p.connections]
    return min(bounds) if bounds else None


def share_limits(limits: LimitSettings, n: int) -> LimitSettings:
    """One process's share of the limits it holds itself."""
    if n == 1:
        return limits
    return LimitSettings(
        rate=limits.rate / n if limits.rate else limits.rate,
        domain_rates={d: r / n for d, r in limits.domain_rates.items()},
        default_domain_rate=(
            limits.default_domain_rate / n
            if limits.default_domain_rate
            else limits.default_domain_rate
        ),
        domain_concurrency=_slots(limits.domain_concurrency, n),
    )


def share_providers(providers: Providers, n: int) -> Providers:
    """One process's share of the shaping rules: its connections to each provider (the
    rates are shared whole, module docstring)."""
    if n == 1:
        return providers
    return Providers(
        [dataclasses.replace(p, connections=_slots(p.connections, n)) for p in providers.providers]
    )


def share_relay(spec: RelaySpec, n: int) -> RelaySpec:
    """One process's share of a relay's own rate and concurrency."""
    if n == 1 or not (spec.rate or spec.concurrency):
        return spec
    return dataclasses.replace(
        spec,
        rate=spec.rate / n if spec.rate else spec.rate,
        concurrency=_slots(spec.concurrency, n),
    )


def _slots(concurrency: int, n: int) -> int:
    """floor(C / N), at least 1; 0 (no limit) stays 0."""
    return max(1, concurrency // n) if concurrency else 0
