"""The side of ``--processes N`` (cli/processes.py) that only several processes need: the
delivery children (:func:`child_main`, each with a :class:`Worker` of its own) and their
parent's supervision of them, for ``send`` (:func:`supervised`: its own worker and N - 1
children) and ``worker`` (:func:`run_workers`: N children)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import DeliveryRun, worker_finished
from mailspool.config import Settings
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.observer import Observer
from mailspool.delivery.reporting import METRICS, ParentLanes, ParentLink
from mailspool.delivery.shaping import LocalLanes
from mailspool.delivery.supervisor import Processes, Supervisor
from mailspool.delivery.worker import Worker
from mailspool.errors import MailspoolError
from mailspool.observe.logs import configure, get_logger
from mailspool.queue import Queue
from mailspool.wiring import (
    limits,
    limits_in_redis,
    make_transport,
    observers,
    open_queue,
    shaper,
    webhook_run,
    worker_config,
)

__all__ = ["ChildSpec", "child_main", "run_workers", "supervised"]


class Until(enum.Enum):
    """When a delivery child's worker ends by itself (else when it is stopped)."""

    STOPPED = "stopped"  # worker: when stopped
    DRAINED = "drained"  # worker --drain: when nothing is due
    PARENT = "parent"  # send: when its parent's idle() says the run is over


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a delivery child needs (picklable): the ``settings``, how many ``processes``
    share the limits, which ``campaign`` it claims (None: every one), the campaign whose
    outbox folder it writes (``send``'s), and when it ends by itself."""

    settings: Settings
    processes: int
    campaign: str | None
    outbox_campaign: str | None = None
    until: Until = Until.STOPPED


def child_main(spec: ChildSpec, conn: Connection) -> None:
    """A delivery child's entry point (spawned): deliver until the parent says stop or
    goes away, or, draining, until nothing is due."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    configure(spec.settings.log_level, spec.settings.log_format)
    try:
        import uvloop  # as the commands run
    except ImportError:
        code = asyncio.run(_deliver(spec, conn))
    else:
        code = uvloop.run(_deliver(spec, conn))
    sys.exit(code)


async def _deliver(spec: ChildSpec, conn: Connection) -> int:
    settings, n = spec.settings, spec.processes
    log = get_logger()
    link = ParentLink(conn)
    run = DeliveryRun()
    try:
        async with contextlib.AsyncExitStack() as stack:
            queue = await stack.enter_async_context(open_queue(settings))
            shared = limits(settings)
            if shared is not None:
                stack.push_async_callback(shared.close)
            # the adapted provider rates: in Redis, or the parent's, one for the command
            lanes = None if limits_in_redis(settings) else ParentLanes(link)
            worker = Worker(
                queue=queue,
                transport=make_transport(settings, spec.outbox_campaign, processes=n),
                config=worker_config(settings, spec.campaign, processes=n),
                observers=[link.forwarder(), *observers(settings)],
                limits=shared,
                shaper=shaper(settings, lanes, processes=n),
            )
            link.hello(worker.owner)  # before the first claim: its leases are handed back
            reporting = _report_metrics(settings, worker, link)

            link.listen(
                stop=worker.stop, stop_now=worker.stop_now, metrics=_answer_metrics(settings, link)
            )
            run.stop_on_signals(
                worker.stop, _say_stopping, worker.stop_now, signals=(signal.SIGTERM,)
            )

            async def drained() -> bool:  # worker --drain: nothing due now
                st = await queue.stats(spec.campaign)
                return st.next_due is None or st.next_due > time.time()

            idle = {Until.DRAINED: drained, Until.PARENT: link.idle}.get(spec.until)
            try:
                await worker.run(idle)
            finally:
                if reporting is not None:
                    reporting.cancel()
                    _report_metrics(settings, worker, link, once=True)
    except MailspoolError as exc:
        log.error("delivery process failed", error=str(exc))
        return 1
    return 0


def _report_metrics(
    settings: Settings, worker: Worker, link: ParentLink, *, once: bool = False
) -> asyncio.Task[None] | None:
    """With --metrics-port: the child's metrics, sent to the parent every second (or
    ``once``: now)."""
    if settings.metrics_port is None:
        return None
    from mailspool.observe.merged import report_metrics, snapshot
    from mailspool.observe.metrics import process_metrics

    metrics = process_metrics()
    if once:
        link.send((METRICS, snapshot(metrics.registry), False))
        return None
    metrics.watch_transport(worker.transport)
    metrics.watch_shaper(worker.shaper)
    return asyncio.create_task(
        report_metrics(lambda data: link.send((METRICS, data, False)), metrics.registry)
    )


def _answer_metrics(settings: Settings, link: ParentLink) -> Callable[[], None]:
    """What a child does when its parent asks for its metrics (a scrape)."""

    def answer() -> None:
        if settings.metrics_port is not None:
            from mailspool.observe.merged import snapshot
            from mailspool.observe.metrics import process_metrics

            link.send((METRICS, snapshot(process_metrics().registry), True))

    return answer


def _say_stopping(signum: int, now: bool) -> None:
    name = signal.Signals(signum).name
    if now:
        get_logger().warning("stopping now: cutting short the messages being sent", signal=name)
    else:
        get_logger().info("stopping: finishing messages in flight", signal=name)


def supervised(
    settings: Settings,
    n: int,
    *,
    queue: Queue,
    campaign: str,
    worker: Worker,
    observers: Sequence[Observer],
) -> Processes:
    """``send``'s delivery by its own ``worker`` and ``n - 1`` children, which tell
    ``observers`` what they record (cli/processes.py :func:`delivering`)."""
    spec = ChildSpec(settings, n, campaign, outbox_campaign=campaign, until=Until.PARENT)
    supervisor = Supervisor(
        target=child_main,
        spec=spec,
        processes=n - 1,
        leases=queue,
        observers=observers,
        lanes=_hosted_lanes(settings, worker),
    )
    return Processes(supervisor, worker)


def _hosted_lanes(settings: Settings, worker: Worker | None = None) -> LocalLanes | None:
    """The adapted provider rates this process holds for its children (reporting.py
    ParentLanes), those of its own worker's shaper when it has one; None when Redis
    holds them or nothing is shaped."""
    if limits_in_redis(settings) or (settings.providers or "").lower() == "off":
        return None
    own = worker.shaper.lanes if worker is not None and worker.shaper is not None else None
    return own if isinstance(own, LocalLanes) else LocalLanes()


async def run_workers(settings: Settings, n: int) -> ExitCode:
    """``mailspool worker`` as the parent of ``n`` delivering children."""
    log = get_logger()
    delivery = DeliveryRun()
    async with contextlib.AsyncExitStack() as stack:
        queue = await stack.enter_async_context(open_queue(settings))
        reclaimed = await reclaim_dead_leases(queue, settings.campaign)
        if reclaimed:
            log.info("reclaimed leases of a worker that died", jobs=reclaimed)
        # job events to --webhook endpoints, and the pruning of old events: once, here
        hooks = await stack.enter_async_context(webhook_run(settings, queue))
        transport = make_transport(settings)  # a bad relay setting stops us before any child
        merged = None
        if settings.metrics_port is not None:
            from mailspool.observe.merged import MergedMetrics, serve_merged

            merged = MergedMetrics(
                shared_rates=limits_in_redis(settings), loop=asyncio.get_running_loop()
            )
            server = serve_merged(settings.host, settings.metrics_port, queue, merged)
            stack.callback(server.shutdown)
        until = Until.DRAINED if settings.drain else Until.STOPPED
        spec = ChildSpec(settings, n, settings.campaign, until=until)
        supervisor = Supervisor(
            target=child_main,
            spec=spec,
            processes=n,
            leases=queue,
            observers=[delivery.counter],
            metrics=merged,
            lanes=_hosted_lanes(settings),
        )
        if merged is not None:
            merged.ask = supervisor.ask_metrics
        delivery.stop_on_signals(supervisor.stop, _say_stopping, supervisor.quit)
        log.info("worker started", processes=n, queue=queue.url, relay=transport.description)
        await supervisor.start()
        await supervisor.wait()
        await worker_finished(log, settings, hooks, queue, delivery, processes=n)
    if supervisor.gave_up:
        print(
            f"mailspool: {supervisor.gave_up} delivery process(es) kept dying and were not"
            " started again; see the log",
            file=sys.stderr,
        )
        return ExitCode.SOME_FAILED
    # a second signal cut messages short, which the status says (as a single worker's)
    return ExitCode.OK if delivery.hurried is None else ExitCode.for_signal(delivery.hurried)
