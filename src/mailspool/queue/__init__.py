"""Queue backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from mailspool.errors import ConfigError
from mailspool.queue.base import DeadFilter, Queue
from mailspool.queue.memory import MemoryQueue
from mailspool.queue.sqlite.queue import SQLiteQueue

__all__ = [
    "DeadFilter",
    "MemoryQueue",
    "Queue",
    "SQLiteQueue",
    "make_queue",
    "queue_packs_messages",
]


def queue_class(url: str) -> type[Queue]:
    """The queue class for ``url``'s scheme, its client library not yet imported."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLiteQueue
    if scheme == "memory":
        return MemoryQueue
    if scheme in ("redis", "rediss"):
        from mailspool.queue.redis.queue import RedisQueue  # optional extra: mailspool[redis]

        return RedisQueue
    if scheme in ("amqp", "amqps"):
        from mailspool.queue.rabbitmq.queue import RabbitMQQueue  # optional: mailspool[rabbitmq]

        return RabbitMQQueue
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite:///file.db, memory://, redis://host:6379/0"
        " or amqp://user:pass@host:5672/"
    )


def queue_packs_messages(url: str, store: str | None = None) -> bool:
    """Whether the queue for ``url`` (with its job store) stores messages packed (see
    Queue.packs_messages), known before it is made: the render processes start first."""
    return queue_class(url).packs_for(store)


def make_queue(url: str, store: str | None = None) -> Queue:
    """A queue for ``url`` (not yet opened). ``store`` is where job state lives for queues
    that cannot hold it themselves (RabbitMQ); the others keep it beside the queue."""
    return queue_class(url).from_url(url, store)
