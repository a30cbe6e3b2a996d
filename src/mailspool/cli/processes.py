"""``--processes N``: ``send`` and ``worker`` delivering from N child processes.

How many (:func:`delivery_processes`): ``--processes``, else one (measured: more only
wait for SQLite's write lock, and gained nothing on two cores with Redis or RabbitMQ),
never more than each limit divided among them allows, and one for a ``memory://`` queue
(no other process can open it). delivery/sharing.py's ``automatic`` (one per CPU, or
one per 1,000 messages a second of ``--rate``) is not the default yet. ``1`` is a
single process, with no child at all.

Each child (cli/supervised.py ``child_main``) opens the queue and delivers with a
:class:`Worker` of its own: its event loop, SMTP connections, lease owner and share of
the limits. The parent supervises them (delivery/supervisor.py: restarts, leases handed
back, the stop forwarded) and counts what they report: one progress line, one summary,
one ``/metrics`` endpoint (observe/merged.py). ``worker``'s parent only supervises
(cli/supervised.py ``run_workers``); ``send``'s reads, queues and delivers too
(:func:`delivering`).

Only this module is on the way of every ``send`` and ``worker``: the supervisor and the
children's side (cli/supervised.py) are imported when more than one process delivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailspool.errors import ConfigError
from mailspool.observe.logs import get_logger
from mailspool.wiring import limits_in_redis

if TYPE_CHECKING:
    from mailspool.config import Settings
    from mailspool.delivery.observer import Observer
    from mailspool.delivery.supervisor import Delivering
    from mailspool.delivery.worker import Worker
    from mailspool.queue import Queue

__all__ = ["delivering", "delivery_processes"]


def delivery_processes(settings: Settings) -> int:
    """How many processes deliver for ``send`` or ``worker`` (the module says how)."""
    if settings.queue.lower().startswith("memory:"):
        if (settings.processes or 1) > 1:
            raise ConfigError("--processes: a memory:// queue lives in one process only")
        return 1
    # one unless asked. With SQLite more processes only wait for its write lock (measured:
    # 2 deliver 0.97 of 1 at 18 % more CPU a message, bench/README.md). With Redis or
    # RabbitMQ two processes on two cores gave 1.03 and 0.89 of one, and with two a
    # provider's adapted rate shared in Redis did not always settle (the shaping test)
    wanted = settings.processes or 1
    if wanted == 1:
        return 1
    from mailspool.delivery.providers import load_providers
    from mailspool.delivery.sharing import most_processes

    rules = None
    if (settings.providers or "").lower() != "off":
        rules = load_providers(Path(settings.providers) if settings.providers else None)
    held = None if limits_in_redis(settings) else settings.limits
    bound = most_processes(held, rules, settings.relays)
    if bound is not None and wanted > bound:
        if settings.processes is not None:
            get_logger().warning(
                "fewer delivery processes than --processes: a concurrency limit (of"
                " --domain-concurrency, a provider's connections or a relay's concurrency)"
                " gives each process at least one slot",
                processes=bound,
                asked=wanted,
            )
        return bound
    return wanted


def delivering(
    settings: Settings,
    n: int,
    *,
    queue: Queue,
    campaign: str,
    worker: Worker,
    observers: Sequence[Observer],
) -> Delivering:
    """What ``send`` delivers with: its ``worker`` alone when ``n`` is 1; else that
    worker and ``n - 1`` children, which tell ``observers`` (the progress, the summary's
    counter, the relay check) what they record. The parent, which reads and queues the
    rows, delivers too: faster than supervising alone (bench/README.md)."""
    if n == 1:
        return worker
    from mailspool.cli.supervised import supervised

    return supervised(
        settings, n, queue=queue, campaign=campaign, worker=worker, observers=observers
    )
