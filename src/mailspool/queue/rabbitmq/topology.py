"""The RabbitMQ queue's settings (the queue URL's own parameters) and the exchange and
queues it declares on the broker: ``<prefix>.work``, ``<prefix>.dlx`` and ``<prefix>.dead``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mailspool.errors import ConfigError, QueueError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AMQPSettings:
    """The RabbitMQ queue's URL, parsed (:func:`parse_amqp_url`): what aio-pika connects
    to, and our own options, each explained beside it."""

    url: str  # for aio-pika: our own parameters removed
    prefix: str = "mailspool"
    batch: int = 200  # job ids per message: fewer, larger messages cost the broker less
    delivery_limit: int = 20  # x-delivery-limit of the work queue
    claim_wait: float = 0.5  # seconds a claim waits for a delivery before using the store
    max_hold: float = 600.0  # never hold a delivery longer (the broker's timeout is 30 min)
    publish_timeout: float = 30.0  # how long enqueue waits for an unreachable broker

    @property
    def work(self) -> str:
        return f"{self.prefix}.work"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    def work_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dlx,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }


def parse_amqp_url(url: str) -> AMQPSettings:
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    rest = []
    numbers = {
        "batch": (int, 1, 10_000),
        "delivery_limit": (int, 1, 1_000_000),
        "claim_wait": (float, 0.0, 60.0),
        "max_hold": (float, 1.0, 86_400.0),
        "publish_timeout": (float, 0.0, 3_600.0),
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prefix":
            if not _PREFIX.fullmatch(value):
                raise ConfigError(f"prefix={value!r} in the queue URL: use letters, digits, _ . -")
            ours[name] = value
        elif name in numbers:
            kind, low, high = numbers[name]
            try:
                number = kind(value)
            except ValueError:
                number = math.nan
            if not low <= number <= high:
                raise ConfigError(f"{name}={value!r} in the queue URL: use {low}..{high}")
            ours[name] = number
        else:
            rest.append((name, value))
    return AMQPSettings(url=urlunsplit(parts._replace(query=urlencode(rest))), **ours)


async def declare(pika: ModuleType, ch: AbstractChannel, cfg: AMQPSettings) -> None:
    """Declare the dead-letter exchange, the dead-letter queue bound to it and the work
    queue on ``ch`` (``pika`` is the aio_pika module)."""
    try:
        dlx = await ch.declare_exchange(cfg.dlx, pika.ExchangeType.FANOUT, durable=True)
        dead = await ch.declare_queue(cfg.dead, durable=True, arguments={"x-queue-type": "quorum"})
        await dead.bind(dlx)
        await ch.declare_queue(cfg.work, durable=True, arguments=cfg.work_arguments())
    except pika.exceptions.ChannelPreconditionFailed as exc:
        raise QueueError(
            f"the RabbitMQ queue {cfg.work} exists with other settings ({exc}):"
            " use the delivery_limit it was created with, or another ?prefix="
        ) from exc
