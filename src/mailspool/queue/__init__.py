"""Queue backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from mailspool.errors import ConfigError
from mailspool.queue.base import DeadFilter, Queue
from mailspool.queue.memory import MemoryQueue
from mailspool.queue.sqlite import SQLiteQueue

__all__ = [
    "DeadFilter",
    "MemoryQueue",
    "Queue",
    "SQLiteQueue",
    "make_queue",
    "queue_packs_messages",
]


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db`` absolute."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(
            f"bad SQLite URL {url!r}: use sqlite:///file.db or sqlite:////abs/path.db"
        )
    return rest[1:]


def queue_packs_messages(url: str, store: str | None = None) -> bool:
    """Whether the queue for ``url`` (with its job store) stores messages packed (see
    Queue.packs_messages), known before it is made: the render processes start first."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLiteQueue.packs_messages
    if scheme in ("redis", "rediss"):
        from mailspool.queue.redis import RedisQueue  # no client imported yet

        return RedisQueue.packs_messages
    if scheme in ("amqp", "amqps") and store:
        from mailspool.store import store_packs_messages

        return store_packs_messages(store)
    return False


def make_queue(url: str, store: str | None = None) -> Queue:
    """A queue for ``url`` (not yet opened). ``store`` is where job state lives for queues
    that cannot hold it themselves (RabbitMQ); the others keep it beside the queue."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLiteQueue(sqlite_path(url))
    if scheme == "memory":
        return MemoryQueue()
    if scheme in ("redis", "rediss"):
        from mailspool.queue.redis import RedisQueue  # optional extra: mailspool[redis]

        return RedisQueue(url)
    if scheme in ("amqp", "amqps"):
        from mailspool.queue.rabbitmq import RabbitMQQueue  # optional: mailspool[rabbitmq]

        return RabbitMQQueue(url, store)
    raise ConfigError(
        f"unsupported queue URL {url!r}: use sqlite:///file.db, memory://, redis://host:6379/0"
        " or amqp://user:pass@host:5672/"
    )
