"""What the routes share: the queue, templates, renderers, in-process workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

from mailspool.api.attachments import Received, SizeLimits
from mailspool.api.bodies import FieldError
from mailspool.api.intake import (
    DEFAULT_CAMPAIGN,
    KEY_FIELD,
    GroupCommit,
    Invalid,
    Item,
    api_builder,
    build_jobs,
    direct_values,
    error,
)
from mailspool.api.senders import SenderDomains
from mailspool.api.templates import TemplateStore
from mailspool.config import Settings
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.limits import Limits, LocalLimits
from mailspool.delivery.worker import Worker
from mailspool.errors import QueueError
from mailspool.intake.builder import JobBuilder
from mailspool.message.render import Renderer
from mailspool.message.unsubscribe import Secrets
from mailspool.models import Enqueued, Job
from mailspool.observe.logs import get_logger
from mailspool.observe.metrics import (
    Metrics,
    MetricsObserver,
    QueueDepth,
    process_metrics,
    scrape_registry,
)
from mailspool.observe.tracing import span, tracer
from mailspool.queue import Queue
from mailspool.schedule import check_send_at
from mailspool.webhooks.run import WebhookRun
from mailspool.wiring import (
    limits,
    load_deliverability,
    make_transport,
    observers,
    open_queue,
    shaper,
    shaping_lanes,
    webhook_run,
    worker_config,
)

#: batches at least this large are rendered on a thread, off the event loop (as is any
#: message using a registered template)
THREAD_RENDER_AT = 16
#: and requests with this many bytes of files (a signature hashes them with the message)
THREAD_FILES_AT = 1024 * 1024
MAX_BUILDERS = 4096
#: /readyz: how long the queue and the job store have to answer
READY_TIMEOUT_S = 2.0


def attachment_limits(settings: Settings) -> SizeLimits:
    """The size limits of a POST /v1/messages body and its files."""
    return SizeLimits(
        body=settings.max_body,
        per_file=settings.max_attachment,
        per_request=settings.max_request_attachments,
    )


class RateSampler:
    """A campaign's current rate from the counts seen by successive reads: final jobs
    (sent + dead) per second over the last minute; None until two reads a second apart."""

    def __init__(self, window: float = 60.0, campaigns: int = 1000) -> None:
        self.window = window
        self.max_campaigns = campaigns
        self._samples: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()

    def rate(self, campaign: str, done: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        samples = self._samples.get(campaign)
        if samples is None:
            samples = self._samples[campaign] = deque(maxlen=256)
            while len(self._samples) > self.max_campaigns:
                self._samples.popitem(last=False)
        self._samples.move_to_end(campaign)
        samples.append((now, done))
        # keep the newest sample that is at least a window old, and everything after it
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        first_t, first_done = samples[0]
        if now - first_t < 1.0:
            return None
        return max(0.0, (done - first_done) / (now - first_t))


class Service:
    def __init__(
        self,
        settings: Settings,
        queue: Queue | None = None,
        workers: int | None = None,
        metrics: Metrics | None = None,
        unsubscribe: Secrets | None = None,
    ) -> None:
        """``unsubscribe``: the secrets that check one-click unsubscribe tokens (/u), None
        when it is not set up."""
        self.settings = settings
        self.unsubscribe = unsubscribe
        self.attachment_limits = attachment_limits(settings)
        self._own_queue = queue is None
        self.queue: Queue | None = queue
        self.n_workers = settings.workers if workers is None else workers
        self.metrics = metrics or process_metrics()
        self.log = get_logger("mailspool.api")
        self.rates = RateSampler()
        self.tracer = tracer()
        self.direct = Renderer.build(None, settings.from_addr, settings.subject)
        #: the --dkim keys, unsubscribe links and list of the messages, loaded (and a bad
        #: key or a missing secret refused) at start
        self.deliverability = load_deliverability(settings)
        signer = self.deliverability.signer
        # the domains of the DKIM keys are ours to send as: a client may use them
        self.senders = SenderDomains.from_settings(
            settings.allowed_from, settings.from_addr, extra=signer.domains if signer else ()
        )
        self.workers: list[Worker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._limits: Limits | None = None
        self.scrape: Any = None
        self._templates: TemplateStore | None = None
        self._commit: GroupCommit | None = None
        self._depth: QueueDepth | None = None
        self._hooks: WebhookRun | None = None
        #: job builders by (campaign, template name, template version)
        self._builders: dict[tuple[str, str, int], JobBuilder] = {}

    @property
    def q(self) -> Queue:
        if self.queue is None:
            raise QueueError("the queue is not open")
        return self.queue

    @property
    def templates(self) -> TemplateStore:
        if self._templates is None:
            raise QueueError("the queue is not open")
        return self._templates

    async def start(self) -> None:
        if self.queue is None:
            self.queue = open_queue(self.settings)
            await self.queue.open()
        queue = self.queue
        if not self.senders.any and not self.senders.domains:
            self.log.warning(
                "no sender domain is allowed: every message will be refused;"
                " give --from or --allowed-from DOMAIN"
            )
        self._templates = TemplateStore(queue, self.settings)
        self._commit = GroupCommit(queue)
        self._depth = QueueDepth(queue, asyncio.get_running_loop())
        self.scrape = scrape_registry(self.metrics, self._depth)
        if self.n_workers:
            await self._start_workers(queue)
        self._hooks = webhook_run(self.settings, queue)
        await self._hooks.__aenter__()

    async def _start_workers(self, queue: Queue) -> None:
        reclaimed = await reclaim_dead_leases(queue)
        if reclaimed:
            self.log.info("reclaimed leases of a worker that died", jobs=reclaimed)
        # one set of limits for every worker loop of this process
        shared = self._limits = limits(self.settings) or (
            LocalLimits(self.settings.limits) if self.settings.limits.any else None
        )
        lanes = shaping_lanes(self.settings)  # one set of adapted rates for every loop
        for _ in range(self.n_workers):
            transport = make_transport(self.settings)
            self.metrics.watch_transport(transport)
            found = observers(self.settings)
            if not any(isinstance(o, MetricsObserver) for o in found):
                found.append(self.metrics.observer())  # /metrics serves them
            worker = Worker(
                queue=queue,
                transport=transport,
                config=worker_config(self.settings),
                observers=found,
                limits=shared,
                shaper=shaper(self.settings, lanes),
            )
            self.metrics.watch_shaper(worker.shaper)
            self.workers.append(worker)
            self.tasks.append(asyncio.create_task(self._run_worker(worker)))
        self.log.info(
            "workers started",
            workers=len(self.workers),
            concurrency=self.settings.concurrency,
            relay=self.workers[0].transport.description,
        )

    async def _run_worker(self, worker: Worker) -> None:
        try:
            await worker.run()
        except Exception as exc:
            self.log.error("worker stopped on an error", error=str(exc), kind=type(exc).__name__)
            raise

    async def stop(self) -> None:
        for w in self.workers:
            w.stop()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._hooks is not None:
            await self._hooks.__aexit__(None, None, None)
            self._hooks = None
        if self._limits is not None:
            await self._limits.close()
        if self.queue is not None and self._own_queue:
            await self.queue.close()

    @property
    def workers_alive(self) -> bool:
        return all(not t.done() for t in self.tasks)

    async def readiness(self) -> str:
        """``ready``, ``queue unavailable`` or ``worker stopped`` (for /readyz): the queue
        must say it is ready (Queue.ready) within READY_TIMEOUT_S."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                if not await self.q.ready(READY_TIMEOUT_S):
                    raise QueueError("not ready")
        except (QueueError, TimeoutError, OSError) as exc:
            self.log.warning("not ready: the queue does not answer", kind=type(exc).__name__)
            return "queue unavailable"
        if not self.workers_alive:
            return "worker stopped"
        return "ready"

    async def refresh_depth(self) -> None:
        if self._depth is not None:
            await self._depth.refresh()

    def _builder(self, campaign: str, renderer: Renderer, name: str, version: int) -> JobBuilder:
        key = (campaign, name, version)
        builder = self._builders.get(key)
        if builder is None:
            if len(self._builders) >= MAX_BUILDERS:
                self._builders.clear()
            builder = self._builders[key] = api_builder(renderer, campaign, self.deliverability)
        return builder

    async def _rows(
        self, received: Received, key: str | None
    ) -> tuple[list[Item], list[FieldError]]:
        items: list[Item] = []
        errors: list[FieldError] = list(received.errors)
        messages = received.messages
        batch = len(messages) > 1
        for i, msg in enumerate(messages):
            campaign = msg.campaign or DEFAULT_CAMPAIGN
            if msg.template is not None:
                stored = await self.templates.get(msg.template)
                if stored is None:
                    errors.append(error(i, "template", f"no template named {msg.template!r}"))
                    continue
                builder = self._builder(campaign, stored.renderer, stored.name, stored.version)
                values: dict[str, Any] = dict(msg.variables or {})
            else:
                builder = self._builder(campaign, self.direct, "", 0)
                values = direct_values(msg)
            if key is None:
                values[KEY_FIELD] = uuid.uuid4().hex
            else:
                values[KEY_FIELD] = f"{key}#{i}" if batch else key
            send_at = 0.0
            if msg.send_at is not None:
                try:
                    send_at = check_send_at(msg.send_at, time.time())
                except ValueError as exc:
                    errors.append(error(i, "send_at", str(exc)))
                    continue
            lst = msg.list_name or self.settings.list_name
            attach = received.attach[i] if received.attach else ()
            items.append(Item(i, builder, values, lst, send_at, attach))
        return items, errors

    async def accept(self, received: Received, key: str | None) -> list[Job]:
        """Render, validate and enqueue the messages of a request, with its files (stored
        before the jobs); raises Invalid listing every failing message."""
        items, errors = await self._rows(received, key)
        messages = received.messages
        uploads = received.uploads
        with span(self.tracer, "mailspool.render", messages=len(messages)):
            now = time.time()
            # a registered template may take up to its render limit (budget.py): never on
            # the event loop, which answers /healthz and every other request meanwhile
            if (
                len(items) >= THREAD_RENDER_AT
                or uploads.size >= THREAD_FILES_AT
                or any(messages[item.index].template is not None for item in items)
            ):
                built = await asyncio.to_thread(build_jobs, items, now, self.senders, uploads)
            else:
                built = build_jobs(items, now, self.senders, uploads)
        errors += built.errors
        if errors:
            raise Invalid(sorted(errors, key=lambda e: e.index or 0))
        if self._commit is None:
            raise QueueError("the queue is not open")
        with span(self.tracer, "mailspool.enqueue", messages=len(built.jobs)):
            results = await self._commit.enqueue(built.jobs, uploads.blobs)
        self.metrics.api_accepted.inc(len(built.jobs))
        for job, res in zip(built.jobs, results, strict=True):
            if res is Enqueued.NEW:
                self.log.info(
                    "message queued", state="queued", job_id=job.id, campaign=job.campaign,
                    domain=job.domain,
                )  # fmt: skip
            else:
                self.log.info(
                    "message known already", result=res.value, job_id=job.id,
                    campaign=job.campaign, domain=job.domain,
                )  # fmt: skip
        return built.jobs
