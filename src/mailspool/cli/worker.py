"""``mailspool worker``: deliver queued jobs until SIGTERM (or, with --drain, until
nothing is due)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import time

from mailspool.cli.exits import ExitCode
from mailspool.cli.processes import delivery_processes
from mailspool.cli.shared import DeliveryRun, worker_finished
from mailspool.config import Settings
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.worker import Worker
from mailspool.models import CampaignState
from mailspool.observe.logs import get_logger
from mailspool.queue import Queue
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
    if processes > 1:  # the parent of delivering children (cli/supervised.py)
        from mailspool.cli.supervised import run_workers

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

        def stopping(signum: int, now: bool) -> None:
            name = signal.Signals(signum).name
            if now:
                log.warning(
                    "stopping now: cutting short the messages being sent (recorded as"
                    " ambiguous), handing the rest back",
                    signal=name,
                )
            else:
                log.info(
                    "stopping: finishing the messages being sent, handing the rest back",
                    signal=name,
                )

        delivery.stop_on_signals(worker.stop, stopping, worker.stop_now)

        async def idle() -> bool:
            if not settings.drain:
                return False
            return await nothing_due(queue, settings.campaign)

        transport = worker.transport.description
        log.info("worker started", owner=worker.owner, queue=queue.url, relay=transport)
        await worker.run(idle)
        await worker_finished(log, settings, hooks, queue, delivery, owner=worker.owner)
    # unlike send's, a worker's run is meant to end by a signal: that is success
    # (docs/retries.md), so its exit status is 0, not 130 or 143; but a second signal
    # cut messages short, which the status says
    return ExitCode.OK if delivery.hurried is None else ExitCode.for_signal(delivery.hurried)


async def nothing_due(queue: Queue, campaign: str | None) -> bool:
    """Whether no job is due now (of ``campaign``, or of any), a paused campaign's not
    counted: no worker claims those until it is resumed."""
    now = time.time()
    st = await queue.stats(campaign)
    if st.next_due is None or st.next_due > now:
        return True
    states = await queue.campaign_states([campaign] if campaign else None)
    paused = {c for c, state in states.items() if state is CampaignState.PAUSED}
    if not paused:
        return False
    for c in [campaign] if campaign else await queue.campaigns():
        if c not in paused and (due := (await queue.stats(c)).next_due) is not None and due <= now:
            return False
    return True
