"""Queue backends and job stores, chosen by URL.

Every backend is one folder (``sqlite/``, ``redis/``, ``rabbitmq/``, ``postgres/``) plus
the in-memory queue tests use; the interfaces are :mod:`mailspool.queue.base` (queues)
and :mod:`mailspool.queue.store` (job stores for queues that keep state apart). A
backend's package is imported only when its URL is used.
"""

from __future__ import annotations

from mailspool.queue.base import DeadFilter, Queue
from mailspool.queue.memory import MemoryQueue
from mailspool.queue.sqlite.queue import SQLiteQueue
from mailspool.queue.store import JobStore, Ref
from mailspool.urls import Plugins

__all__ = [
    "QUEUES",
    "STORES",
    "DeadFilter",
    "JobStore",
    "MemoryQueue",
    "Queue",
    "Ref",
    "SQLiteQueue",
    "make_queue",
    "make_store",
    "queue_class",
    "queue_packs_messages",
    "store_class",
]

QUEUES: Plugins[Queue] = Plugins(
    "queue URL",
    {
        "sqlite": "mailspool.queue.sqlite.queue:SQLiteQueue",
        "memory": "mailspool.queue.memory:MemoryQueue",
        "redis": "mailspool.queue.redis.queue:RedisQueue",
        "rediss": "mailspool.queue.redis.queue:RedisQueue",
        "amqp": "mailspool.queue.rabbitmq.queue:RabbitMQQueue",
        "amqps": "mailspool.queue.rabbitmq.queue:RabbitMQQueue",
    },
    "use sqlite:///file.db, memory://, redis://host:6379/0 or amqp://user:pass@host:5672/",
)
STORES: Plugins[JobStore] = Plugins(
    "job store URL",
    {
        "postgresql": "mailspool.queue.postgres.store:PostgresStore",
        "postgres": "mailspool.queue.postgres.store:PostgresStore",
        "redis": "mailspool.queue.redis.store:RedisJobStore",
        "rediss": "mailspool.queue.redis.store:RedisJobStore",
    },
    "use postgresql://user@host:5432/database or redis://host:6379/0",
)


def queue_class(url: str) -> type[Queue]:
    """The queue class for ``url``'s scheme, its client library not yet imported."""
    return QUEUES.for_url(url)


def queue_packs_messages(url: str, store: str | None = None) -> bool:
    """Whether the queue for ``url`` (with its job store) stores messages packed (see
    Queue.packs_messages), known before it is made: the render processes start first."""
    return queue_class(url).packs_for(store)


def make_queue(url: str, store: str | None = None) -> Queue:
    """A queue for ``url`` (not yet opened). ``store`` is where job state lives for queues
    that cannot hold it themselves (RabbitMQ); the others keep it beside the queue."""
    return queue_class(url).from_url(url, store)


def store_class(url: str) -> type[JobStore]:
    """The job store class for ``url``'s scheme, its driver not yet imported."""
    return STORES.for_url(url)


def make_store(url: str) -> JobStore:
    """A job store for ``url`` (not yet opened)."""
    return store_class(url).from_url(url)
