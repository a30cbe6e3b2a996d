"""``mailspool worker``: deliver queued jobs until SIGTERM (or, with --drain, until
nothing is due)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import time

from mailspool.cli.exits import ExitCode
from mailspool.cli.processes import delivery_processes, run_workers
from mailspool.cli.shared import DeliveryRun
from mailspool.config import Settings
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.worker import Worker
from mailspool.observe.logs import get_logger
from mailspool.wiring import (
    check_shared_limits,
    limits,
    make_transport,
    observers,
    open_queue,
    shaper,
    webhook_run,
    worker_config,
)


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    log = get_logger()
    check_shared_limits(settings)
    processes = delivery_processes(settings)
    if processes > 1:  # the parent of delivering children (cli/processes.py)
        return await run_workers(settings, processes)
    delivery = DeliveryRun()
    async with contextlib.AsyncExitStack() as stack:
        queue = await stack.enter_async_context(open_queue(settings))
        reclaimed = await reclaim_dead_leases(queue, settings.campaign)
        if reclaimed:
            log.info("reclaimed leases of a worker that died", jobs=reclaimed)
        shared = limits(settings)
        if shared is not None:
            stack.push_async_callback(shared.close)
        # job events to --webhook endpoints, and the pruning of old events
        hooks = await stack.enter_async_context(webhook_run(settings, queue))
        worker = Worker(
            queue=queue,
            transport=make_transport(settings),
            config=worker_config(settings, settings.campaign),
            observers=[delivery.counter, *observers(settings)],
            limits=shared,
            shaper=shaper(settings),
        )
        if settings.metrics_port is not None:
            from mailspool.observe.metrics import serve_metrics  # prometheus_client: only here

            server = serve_metrics(
                settings.host, settings.metrics_port, queue, worker.transport, worker.shaper
            )
            stack.callback(server.shutdown)

        def stopping(signum: int) -> None:
            name = signal.Signals(signum).name
            log.info("stopping: finishing messages in flight", signal=name)

        delivery.stop_on_signals(worker.stop, stopping)

        async def idle() -> bool:
            if not settings.drain:
                return False
            st = await queue.stats(settings.campaign)
            return st.next_due is None or st.next_due > time.time()

        transport = worker.transport.description
        log.info("worker started", owner=worker.owner, queue=queue.url, relay=transport)
        await worker.run(idle)
        if settings.drain and hooks.endpoints:
            left = await hooks.drain(settings.webhook_drain)
            waiting = sum(b.waiting for b in left.values())
            if waiting:
                log.warning(
                    "webhook events not delivered yet: kept for the next run", waiting=waiting
                )
        log.info("worker stopped", owner=worker.owner, **delivery.tally().fields())
    # unlike send's, a worker's run is meant to end by a signal: that is success
    # (docs/retries.md), so its exit status is 0, not 130 or 143
    return ExitCode.OK
