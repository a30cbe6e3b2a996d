"""``mailspool send``: enqueue every row and deliver until the campaign is final."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailspool.cli.exits import ExitCode
from mailspool.cli.processes import delivering, delivery_processes
from mailspool.cli.shared import DeliveryRun, campaign_halted, source_path
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.observer import Observer
from mailspool.delivery.worker import Worker
from mailspool.errors import AuthFailure, DeliveryError, RejectedRow, TLSFailure
from mailspool.intake.sources import open_source
from mailspool.models import PENDING_STATES, CampaignState, State
from mailspool.observe.logs import get_logger
from mailspool.observe.progress import Progress
from mailspool.wiring import (
    build_pool,
    default_campaign,
    limits,
    load_renderer,
    make_producer,
    make_transport,
    observers,
    open_queue,
    shaper,
    webhook_run,
    worker_config,
)

# only the types: what reaches the first row imports no more than it uses (the supervisor
# with --processes, the webhooks with --webhook, the render pool for a large file)
if TYPE_CHECKING:
    from mailspool.config import Settings
    from mailspool.delivery.supervisor import Delivering
    from mailspool.intake.pool import BuildPool
    from mailspool.intake.producer import Producer, ProducerReport
    from mailspool.intake.sources import Row, Source
    from mailspool.models import CampaignStats
    from mailspool.queue import Queue
    from mailspool.transport import Transport
    from mailspool.webhooks.run import WebhookRun


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    return await SendRun(settings, source_path(args), json_output=settings.json_output).run()


class SendRun:
    """One ``mailspool send``: the rows of ``source`` queued as a campaign and delivered by
    a worker in the same process until every job is final, or until what is left waits
    for a retry beyond ``--max-wait``. ``json_output``: the summary as JSON on stdout
    instead of lines on stderr."""

    def __init__(self, settings: Settings, source: Path, *, json_output: bool = False) -> None:
        self.settings = settings
        self.source = source
        self.json_output = json_output
        self.log = get_logger()
        self.delivery = DeliveryRun()
        self.campaign = ""
        #: the campaign was paused while it ran (`mailspool campaign pause`)
        self.paused = False

    async def run(self) -> ExitCode:
        settings, log = self.settings, self.log
        renderer = load_renderer(settings)  # first: reports an unreadable template clearly
        campaign = self.campaign = settings.campaign or default_campaign(self.source, settings)
        source = open_source(self.source)
        n = delivery_processes(settings)  # this one (or its children) and n - 1 others
        transport = make_transport(settings, campaign, processes=n)
        pool = build_pool(settings, renderer, campaign, self.source, delivering=True)
        async with contextlib.AsyncExitStack() as stack:
            if pool is not None:
                stack.push_async_callback(pool.aclose)
            queue = await stack.enter_async_context(open_queue(settings))
            _, halted = await campaign_halted(queue, campaign, "sent", refuse_paused=True)
            if halted is not None:
                return halted
            reclaimed = await reclaim_dead_leases(queue, campaign)
            if reclaimed:
                log.info(
                    "reclaimed leases of an interrupted run", campaign=campaign, jobs=reclaimed
                )
            # what earlier runs sent: this run's worker may send pending jobs of the campaign
            # before the producer reaches their rows, so the producer alone cannot tell
            sent_before = (await queue.stats(campaign)).get(State.SENT)
            producer = await make_producer(queue, renderer, campaign, settings, pool=pool)
            shared = limits(settings)
            if shared is not None:
                stack.push_async_callback(shared.close)
            hooks = await stack.enter_async_context(webhook_run(settings, queue))
            progress = Progress(f"{campaign}", enabled=True)
            relay = StopOnRelayMisconfiguration(log)
            worker = Worker(
                queue=queue,
                transport=transport,
                config=worker_config(settings, campaign, processes=n),
                observers=[self.delivery.counter, progress, relay, *observers(settings)],
                limits=shared,
                shaper=shaper(settings, processes=n),
            )
            counting = [self.delivery.counter, progress, relay]  # told by the children too
            deliverer = delivering(
                settings, n, queue=queue, campaign=campaign, worker=worker, observers=counting
            )
            relay.worker = deliverer
            report = await self._deliver(queue, deliverer, producer, source, progress, pool)
            stats = await queue.stats(campaign)
            state = (await queue.campaign_states([campaign])).get(campaign)
            self.paused = state is CampaignState.PAUSED
            summary = self._summary(report, stats, sent_before, transport)
            if hooks.endpoints:
                summary["webhooks"] = await self._drain(hooks)
            self._print(summary, stats, transport, report)
            if relay.error is not None:
                print(
                    f"mailspool: the relay refused us: {relay.error} (stage {relay.error.stage})."
                    f" Nothing more was attempted; {pending_words(stats)} stay in the queue."
                    " Fix the relay settings and run the same command again.",
                    file=sys.stderr,
                )
            return self._exit_code(summary, stats)

    async def _deliver(
        self,
        queue: Queue,
        worker: Delivering,
        producer: Producer,
        source: Source,
        progress: Progress,
        pool: BuildPool | None,
    ) -> ProducerReport:
        """Queue every row while the worker delivers; then let the worker go on until the
        campaign is final, or until its next retry is due beyond --max-wait."""
        campaign, max_wait = self.campaign, self.settings.max_wait
        deadline: list[float] = []
        produced = asyncio.Event()

        async def idle() -> bool:
            if not produced.is_set():
                return False
            st = await queue.stats(campaign)
            if st.pending == 0 or await queue.campaign_states([campaign]):
                return True  # all final, or paused meanwhile: no worker claims its jobs
            if not deadline:
                deadline.append(time.time() + max_wait)
            return st.get(State.SENDING) == 0 and (st.next_due or 0) > deadline[0]

        self.delivery.stop_on_signals(worker.stop, _say_stopping, worker.stop_now)
        self.log.info(
            "send started", campaign=campaign, queue=queue.url, relay=worker.transport.description
        )
        progress.start()
        worker_task = asyncio.create_task(worker.run(idle))
        try:
            report = await producer.run(self._rows(source))
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
        return report

    def _rows(self, source: Source) -> Iterator[Row | RejectedRow]:
        """The source's rows until a signal stops the run."""
        for row in source.rows():
            if self.delivery.interrupted:
                return
            yield row

    async def _drain(self, hooks: WebhookRun) -> dict[str, int]:
        """Let the webhooks catch up (up to --webhook-drain, not at all after a second
        signal); what waits for a later run."""
        left = await hooks.drain(0 if self.delivery.hurried else self.settings.webhook_drain)
        waiting = sum(b.waiting for b in left.values())
        dead = sum(b.dead for b in left.values())
        if waiting:
            self.log.warning(
                "webhook events not delivered yet: they are kept for the next worker, serve"
                " or send with the same --webhook, or `mailspool webhooks retry`",
                waiting=waiting,
            )
        return {"waiting": waiting, "dead": dead}

    def _summary(
        self,
        report: ProducerReport,
        stats: CampaignStats,
        sent_before: int,
        transport: Transport,
    ) -> dict[str, Any]:
        tally = self.delivery.tally()
        summary: dict[str, Any] = {
            "campaign": self.campaign,
            "rows": report.rows,
            # what this run queued: rows already sent by an earlier run count once, as skipped
            "queued": report.queued + report.already_sent - sent_before,
            "sent": tally.sent,
            # the campaign's jobs not final at the end, in status's words: pending is
            # queued + sending + deferred; deferred alone is what is due later (a retry,
            # a send window, a paused relay)
            "pending": stats.pending,
            "deferred": stats.get(State.DEFERRED),
            "dead": stats.get(State.DEAD),
            # not sent: the campaign was cancelled (`mailspool campaign cancel`)
            "cancelled": stats.get(State.CANCELLED),
            # not sent because every recipient is suppressed: at enqueue, or found so by
            # the worker just before sending; not a failure
            "suppressed": report.suppressed + tally.suppressed,
            "rejected": report.rejected,
            "duplicates": report.duplicates,
            "skipped_already_sent": sent_before,
            "ambiguous": stats.ambiguous,
            "unsigned": report.unsigned,
            "elapsed_s": tally.elapsed_s,
            "rate_per_s": tally.rate_per_s,
            "outbox": None if transport.delivers else str(getattr(transport, "directory", "")),
        }
        if report.rejects_file is not None:
            summary["rejects_file"] = str(report.rejects_file)
        return summary

    def _print(
        self,
        s: dict[str, Any],
        stats: CampaignStats,
        transport: Transport,
        report: ProducerReport,
    ) -> None:
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
            ("cancelled with the campaign: not sent", "cancelled"),
            ("suppressed (unsubscribed, bounced or complained): not sent", "suppressed"),
            ("without a DKIM signature (no --dkim key for their From domain)", "unsigned"),
            ("ambiguous deliveries (may have been sent twice)", "ambiguous"),
        ):
            if s[key]:
                print(f"  {s[key]} {label}", file=out)
        if s["pending"]:
            print(f"  {pending_words(stats)}: not sent yet", file=out)
        if report.rejects_file:
            print(f"  rejected rows: {report.rejects_file}", file=out)
        hooks = s.get("webhooks")
        if hooks and (hooks["waiting"] or hooks["dead"]):
            print(
                f"  webhook events: {hooks['waiting']} not delivered yet (kept for the next"
                f" run), {hooks['dead']} dead-lettered (`mailspool webhooks list`)",
                file=out,
            )
        if not transport.delivers:
            print(
                f"  NOTHING WAS SENT: no --smtp relay given; messages are in {s['outbox']}/",
                file=out,
            )

    def _exit_code(self, s: dict[str, Any], stats: CampaignStats) -> ExitCode:
        stopped = self.delivery.signal_exit()
        if stopped is not None:
            how = (
                "messages cut short in their SMTP transaction are counted as ambiguous"
                " (they may have arrived: a re-run sends them again, same Message-ID)"
                if self.delivery.hurried
                else "messages already being sent finished"
            )
            print(
                f"interrupted: {how}; the rest went back to the queue unsent;"
                f" {pending_words(stats)}. Run the same command again to resume"
                f" (campaign {self.campaign}).",
                file=sys.stderr,
            )
            return stopped
        if s["pending"] and self.paused:
            print(
                f"{pending_words(stats)}: campaign {self.campaign} is paused. Resume it"
                f" (`mailspool campaign resume {self.campaign}`) and run the same command"
                " again, or a `mailspool worker`.",
                file=sys.stderr,
            )
            return ExitCode.PENDING
        if s["pending"]:
            words = pending_words(stats)
            if s["deferred"]:
                words += (
                    "; the deferred are due in their send window (--window, --send-at) or"
                    " at a retry"
                    if self.settings.schedule is not None
                    else "; the deferred are due at a retry after --max-wait"
                )
            print(
                f"{words}. Run the same command again, or `mailspool worker`, to continue.",
                file=sys.stderr,
            )
            return ExitCode.PENDING
        if s["rejected"] or s["dead"] or s["cancelled"]:
            return ExitCode.SOME_FAILED
        return ExitCode.OK


def pending_words(stats: CampaignStats) -> str:
    """The jobs not final, by state in ``status``'s words: ``17 pending (15 queued, 2
    deferred)``."""
    parts = ", ".join(f"{stats.get(s)} {s.value}" for s in PENDING_STATES if stats.get(s))
    return f"{stats.pending} pending ({parts})" if parts else "0 pending"


def _say_stopping(signum: int, now: bool) -> None:
    if now:
        print(
            "stopping now: cutting short the messages being sent, handing the rest back"
            " (Ctrl-C again to exit without even that)",
            file=sys.stderr,
        )
        return
    print(
        "stopping: messages already being sent finish, the rest goes back to the queue"
        " (Ctrl-C again to stop at once)",
        file=sys.stderr,
    )


class StopOnRelayMisconfiguration(Observer):
    """An authentication or TLS failure will not fix itself within one run: stop at once
    with the jobs still queued and say why, instead of waiting out --max-wait. ``log``:
    where to say it; ``worker`` (set once made): the worker to stop."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.worker: Delivering | None = None
        self.error: DeliveryError | None = None

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        # the pause itself is logged by the log observer; this says why the run stops
        if isinstance(err, AuthFailure | TLSFailure) and self.error is None:
            self.log.error("relay misconfigured, stopping", error=str(err), stage=err.stage)
            self.error = err
            if self.worker is not None:
                self.worker.stop()
