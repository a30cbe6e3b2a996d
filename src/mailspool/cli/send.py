"""``mailspool send``: enqueue every row and deliver until the campaign is final."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailspool.config import Settings
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.observer import Counter, Observer
from mailspool.delivery.worker import Worker
from mailspool.errors import AuthFailure, DeliveryError, TLSFailure
from mailspool.intake.pool import BuildPool
from mailspool.intake.producer import Producer, ProducerReport
from mailspool.intake.sources import open_source
from mailspool.models import State
from mailspool.observe.logs import get_logger
from mailspool.observe.progress import Progress
from mailspool.queue import Queue
from mailspool.transport import Transport
from mailspool.wiring import (
    build_pool,
    default_campaign,
    limits,
    load_renderer,
    make_producer,
    make_transport,
    observers,
    open_queue,
    worker_config,
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_PENDING = 0, 1, 2, 75
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


@dataclass
class SendRun:
    settings: Settings
    source: Path
    json_output: bool = False

    async def run(self) -> int:
        log = get_logger()
        started = time.monotonic()
        settings = self.settings
        renderer = load_renderer(settings)  # first: reports an unreadable template clearly
        campaign = settings.campaign or default_campaign(self.source, settings)
        source = open_source(self.source)
        transport = make_transport(settings, campaign)
        pool = build_pool(settings, renderer, campaign, self.source, delivering=True)
        try:
            async with open_queue(settings) as queue:
                return await self._run(
                    queue, transport, renderer, source, campaign, started, log, pool
                )
        finally:
            if pool is not None:
                await pool.aclose()

    async def _run(
        self, queue: Queue, transport: Transport, renderer: Any, source: Any,
        campaign: str, started: float, log: Any, pool: BuildPool | None,
    ) -> int:  # fmt: skip
        settings = self.settings
        reclaimed = await reclaim_dead_leases(queue, campaign)
        if reclaimed:
            log.info("reclaimed leases of an interrupted run", campaign=campaign, jobs=reclaimed)
        # what earlier runs sent: this run's worker may send pending jobs of the campaign
        # before the producer reaches their rows, so the producer alone cannot tell
        sent_before = (await queue.stats(campaign)).get(State.SENT)
        producer = await make_producer(queue, renderer, campaign, settings, pool=pool)
        counter = Counter()
        progress = Progress(f"{campaign}", enabled=True)
        relay = StopOnRelayMisconfiguration(log)
        shared = limits(settings)
        worker = Worker(
            queue,
            transport,
            worker_config(settings, campaign),
            [counter, progress, relay, *observers(settings)],
            shared,
        )
        relay.worker = worker
        deadline: list[float] = []
        produced = asyncio.Event()

        async def idle() -> bool:
            if not produced.is_set():
                return False
            st = await queue.stats(campaign)
            if st.pending == 0:
                return True
            if not deadline:
                deadline.append(time.time() + settings.max_wait)
            return st.get(State.SENDING) == 0 and (st.next_due or 0) > deadline[0]

        interrupted = _install_signals(worker)
        log.info("send started", campaign=campaign, queue=queue.url, relay=transport.description)
        progress.start()
        worker_task = asyncio.create_task(worker.run(idle))
        try:
            report = await self._produce(producer, source, interrupted)
            if pool is not None:  # its cores are the worker's now
                await pool.aclose()
            progress.set_total(report.queued)
            produced.set()
            await worker_task
        finally:
            progress.stop()
            if not worker_task.done():
                worker.stop()
                await asyncio.gather(worker_task, return_exceptions=True)
            if shared is not None:
                await shared.close()
        stats = await queue.stats(campaign)
        elapsed = time.monotonic() - started
        summary = self._summary(campaign, report, counter, stats, elapsed, transport)
        summary["queued"] = report.queued + report.already_sent - sent_before
        summary["skipped_already_sent"] = sent_before
        self._print(summary, transport, report)
        if relay.error is not None:
            print(
                f"mailspool: the relay refused us: {relay.error} (stage {relay.error.stage})."
                f" Nothing more was attempted; {summary['deferred']} messages stay queued."
                " Fix the relay settings and run the same command again.",
                file=sys.stderr,
            )
        return self._exit_code(summary, interrupted, campaign)

    async def _produce(
        self, producer: Producer, source: Any, interrupted: dict[str, int]
    ) -> ProducerReport:
        def rows() -> Any:
            for row in source.rows():
                if interrupted:
                    return
                yield row

        return await producer.run(rows())

    def _summary(
        self, campaign: str, report: ProducerReport, counter: Counter, stats: Any,
        elapsed: float, transport: Transport,
    ) -> dict[str, Any]:  # fmt: skip
        summary: dict[str, Any] = {
            "campaign": campaign,
            "rows": report.rows,
            "queued": report.queued,
            "sent": counter.sent_count,
            "deferred": stats.pending,
            "dead": stats.get(State.DEAD),
            "rejected": report.rejected,
            "duplicates": report.duplicates,
            "skipped_already_sent": report.already_sent,
            "ambiguous": stats.ambiguous,
            "elapsed_s": round(elapsed, 3),
            "rate_per_s": round(counter.sent_count / elapsed, 1) if elapsed > 0 else 0.0,
            "outbox": None if transport.delivers else str(getattr(transport, "directory", "")),
        }
        if report.rejects_file is not None:
            summary["rejects_file"] = str(report.rejects_file)
        return summary

    def _print(self, s: dict[str, Any], transport: Transport, report: ProducerReport) -> None:
        if self.json_output:
            print(json.dumps(s), flush=True)
            return
        out = sys.stderr
        print(f"campaign {s['campaign']}: {s['rows']} rows in {s['elapsed_s']:.1f}s", file=out)
        verb = "sent" if transport.delivers else "written to the outbox (NOT sent)"
        print(f"  {s['sent']} {verb} ({s['rate_per_s']:.0f}/s)", file=out)
        for label, key in (
            ("already sent by an earlier run, skipped", "skipped_already_sent"),
            ("duplicates skipped", "duplicates"),
            ("rejected", "rejected"),
            ("dead-lettered", "dead"),
            ("still queued or deferred", "deferred"),
            ("ambiguous deliveries (may have been sent twice)", "ambiguous"),
        ):
            if s[key]:
                print(f"  {s[key]} {label}", file=out)
        if report.rejects_file:
            print(f"  rejected rows: {report.rejects_file}", file=out)
        if not transport.delivers:
            print(
                f"  NOTHING WAS SENT: no --smtp relay given; messages are in {s['outbox']}/",
                file=out,
            )

    def _exit_code(self, s: dict[str, Any], interrupted: dict[str, int], campaign: str) -> int:
        if interrupted:
            print(
                f"interrupted: messages in flight finished; {s['deferred']} still queued."
                f" Run the same command again to resume (campaign {campaign}).",
                file=sys.stderr,
            )
            return EXIT_SIGINT if interrupted.get("signal") == signal.SIGINT else EXIT_SIGTERM
        if s["deferred"]:
            print(
                f"{s['deferred']} messages are still queued or deferred for a later retry."
                " Run the same command again, or `mailspool worker`, to continue.",
                file=sys.stderr,
            )
            return EXIT_PENDING
        if s["rejected"] or s["dead"]:
            return EXIT_SOME_FAILED
        return EXIT_OK


class StopOnRelayMisconfiguration(Observer):
    """An authentication or TLS failure will not fix itself within one run: stop at once
    with the jobs still queued and say why, instead of waiting out --max-wait."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.worker: Worker | None = None
        self.error: DeliveryError | None = None

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        # the pause itself is logged by the log observer; this says why the run stops
        if isinstance(err, AuthFailure | TLSFailure) and self.error is None:
            self.log.error("relay misconfigured, stopping", error=str(err), stage=err.stage)
            self.error = err
            if self.worker is not None:
                self.worker.stop()


def _install_signals(worker: Worker) -> dict[str, int]:
    interrupted: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    def handler(signum: int) -> None:
        if interrupted:  # a second Ctrl-C: stop now
            raise SystemExit(128 + signum)
        interrupted["signal"] = signum
        print("stopping: finishing messages in flight (Ctrl-C again to quit now)", file=sys.stderr)
        worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, handler, sig)
    return interrupted
