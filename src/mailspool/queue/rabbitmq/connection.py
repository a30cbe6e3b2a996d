"""The RabbitMQ queue's connection to the broker: connecting and declaring, reconnecting
with backoff after a broker restart, and publishing announcements (messages naming job
ids) on its channel with publisher confirms."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import structlog

from mailspool.errors import QueueError
from mailspool.queue.rabbitmq.topology import AMQPSettings, declare
from mailspool.queue.store import Ref

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection

RECONNECT_FIRST = 0.1  # seconds before the first reconnection attempt
RECONNECT_MAX = 5.0  # cap of the exponential backoff between attempts
CONNECT_TIMEOUT = 10.0
log = structlog.get_logger("mailspool")


class _QuietConnectErrors(logging.Filter):
    """aiormq logs each failed connection attempt as an error; while reconnecting the
    queue says so itself (on the first attempt, then every tenth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


def quiet_aiormq() -> None:
    """Keep aiormq from logging each failed connection attempt (see _QuietConnectErrors)."""
    logger = logging.getLogger("aiormq.connection")
    if not any(isinstance(f, _QuietConnectErrors) for f in logger.filters):
        logger.addFilter(_QuietConnectErrors())


def _chunks(refs: Sequence[Ref], size: int) -> Iterator[tuple[str, list[str]]]:
    by_campaign: dict[str, list[str]] = {}
    for r in refs:
        by_campaign.setdefault(r.campaign, []).append(r.id)
    for campaign, ids in by_campaign.items():
        for start in range(0, len(ids), size):
            yield campaign, ids[start : start + size]


class BrokerConnection(abc.ABC):
    """The connection half of :class:`~mailspool.queue.rabbitmq.queue.RabbitMQQueue`, which sets
    these attributes up. Deliveries are the consumer's (see :mod:`.deliveries`): the
    connection asks it for their channel, and tells it when they are lost."""

    cfg: AMQPSettings
    _pika: ModuleType
    _errors: tuple[type[BaseException], ...]
    _broker: str
    _conn: AbstractConnection | None
    _pub: AbstractChannel | None
    _sub: AbstractChannel | None
    _ready: asyncio.Event
    _generation: int
    _closing: bool
    _reconnect_task: asyncio.Task[None] | None
    _background: set[asyncio.Task[Any]]

    async def _connect(self) -> None:
        conn = await self._pika.connect(self.cfg.url, timeout=CONNECT_TIMEOUT)
        try:
            pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
            await declare(self._pika, pub, self.cfg)
            self._generation += 1
            sub = await self._resubscribe(conn)
        except BaseException:
            with contextlib.suppress(*self._errors):
                await conn.close()
            raise
        self._conn, self._pub, self._sub = conn, pub, sub
        conn.close_callbacks.add(self._on_connection_closed)
        for ch in (pub, sub):
            if ch is not None:
                ch.close_callbacks.add(self._on_channel_closed)
        self._ready.set()

    @abc.abstractmethod
    async def _resubscribe(self, conn: AbstractConnection) -> AbstractChannel | None:
        """The channel deliveries come on over a new connection: None until consuming
        has started."""

    @abc.abstractmethod
    def _drop_deliveries(self) -> None:
        """The connection was lost: forget the deliveries it brought."""

    def _on_connection_closed(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._closing or sender is not self._conn:
            return
        log.warning("rabbitmq connection lost; reconnecting", broker=self._broker, error=repr(exc))
        self._conn = self._pub = self._sub = None
        self._ready.clear()
        self._generation += 1  # every delivery held is returned to the queue by the broker
        self._drop_deliveries()
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(self._reconnect())

    def _on_channel_closed(self, sender: Any, exc: BaseException | None = None) -> None:
        """A channel closed under a live connection (an error on it, a consumer timeout):
        start again with a fresh connection, which the reconnection loop does."""
        conn = self._conn
        if self._closing or conn is None or conn.is_closed:
            return
        self._spawn(conn.close())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST
        attempts = 0
        while not self._closing:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempts += 1
            try:
                await self._connect()
            except self._errors as exc:
                if attempts == 1 or attempts % 10 == 0:
                    log.warning("rabbitmq unreachable", broker=self._broker, error=repr(exc))
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            except QueueError as exc:
                log.error("rabbitmq refused the queue settings", error=str(exc))
                delay = RECONNECT_MAX
                continue
            log.warning("rabbitmq reconnected", broker=self._broker, attempts=attempts)
            return

    async def _wait_ready(self, timeout: float) -> bool:
        if self._ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- announcements ----------------------------------------------------------------

    async def _publish(self, refs: Sequence[Ref]) -> None:
        pub = self._pub
        if pub is None:
            raise QueueError(f"not connected to RabbitMQ at {self._broker}")
        exchange = pub.default_exchange
        results = await asyncio.gather(
            *(
                exchange.publish(
                    self._pika.Message(
                        "\n".join(ids).encode(),
                        headers={"campaign": campaign},
                        delivery_mode=self._pika.DeliveryMode.PERSISTENT,
                        content_type="text/plain",
                    ),
                    routing_key=self.cfg.work,
                )
                for campaign, ids in _chunks(refs, self.cfg.batch)
            ),
            return_exceptions=True,
        )
        for res in results:
            if isinstance(res, BaseException):
                raise QueueError(f"RabbitMQ did not confirm a message: {res!r}") from res

    async def _announce(self, refs: Sequence[Ref], *, wait: bool) -> bool:
        """Publish messages naming ``refs`` (confirmed by the broker). With ``wait``, keep
        trying through a reconnection for up to ``publish_timeout``, then raise; without,
        one try: jobs left unannounced are claimed from the store."""
        if not refs:
            return True
        deadline = time.monotonic() + (self.cfg.publish_timeout if wait else 0.0)
        while True:
            error: QueueError | None = None
            if self._ready.is_set():
                try:
                    await self._publish(refs)
                    return True
                except QueueError as exc:
                    error = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._wait_ready(remaining):
                if not wait:
                    return False
                raise QueueError(
                    f"RabbitMQ at {self._broker} did not take {len(refs)} new jobs within"
                    f" {self.cfg.publish_timeout:.0f}s ({error or 'not connected'}); they are"
                    " stored and workers will claim them from the store"
                )
            if error is not None:
                await asyncio.sleep(0.05)  # the connection is being replaced
