"""Queue backends and job stores, chosen by URL.

The interfaces: :class:`Queue` (:mod:`mailspool.queue.base`), which every queue backend
implements, and :class:`JobStore` (:mod:`mailspool.queue.store`), for queues that keep job
state apart; the roles their callers type against (:mod:`mailspool.queue.roles`). Every
backend is one folder (``sqlite/``, ``redis/``, ``rabbitmq/``, ``postgres/``), plus the
in-memory queue of tests and dry runs (``memory.py``). A backend's modules are its own:
code outside its folder uses what this package exports (the classes by URL through
:data:`QUEUES` and :data:`STORES`, or by name), and a backend's package is imported only
when its URL or its class is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mailspool.queue.base import DeadFilter, Queue
from mailspool.queue.roles import (
    Blobs,
    CampaignControl,
    CampaignSettings,
    Claiming,
    DeadLetterAdmin,
    Enqueuing,
    Inspection,
    LeaseAdmin,
    Returning,
    StoreCampaignControl,
    StoreClaiming,
    StoreDeadLetterAdmin,
    StoreEnqueuing,
    StoreLeaseAdmin,
    Suppressing,
)
from mailspool.queue.sqlite.queue import SQLiteQueue
from mailspool.queue.store import STORES, JobStore, Ref, make_store, store_class
from mailspool.urls import Plugins

if TYPE_CHECKING:
    from mailspool.queue.memory import MemoryQueue
    from mailspool.queue.postgres.store import PostgresStore
    from mailspool.queue.rabbitmq.queue import RabbitMQQueue
    from mailspool.queue.redis.queue import RedisQueue
    from mailspool.queue.redis.store import RedisJobStore

__all__ = [
    "QUEUES",
    "STORES",
    "Blobs",
    "CampaignControl",
    "CampaignSettings",
    "Claiming",
    "DeadFilter",
    "DeadLetterAdmin",
    "Enqueuing",
    "Inspection",
    "JobStore",
    "LeaseAdmin",
    "MemoryQueue",
    "PostgresStore",
    "Queue",
    "RabbitMQQueue",
    "RedisJobStore",
    "RedisQueue",
    "Ref",
    "Returning",
    "SQLiteQueue",
    "StoreCampaignControl",
    "StoreClaiming",
    "StoreDeadLetterAdmin",
    "StoreEnqueuing",
    "StoreLeaseAdmin",
    "Suppressing",
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


def __getattr__(name: str) -> Any:
    """A backend's class by name, imported when first named (``from mailspool.queue
    import RedisQueue``): the optional backends' client libraries are extras."""
    for plugins in (QUEUES, STORES):
        for target in plugins.entries.values():
            module, _, cls = target.partition(":")
            if cls == name:
                return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
