"""The queue contract's fixture, a fresh queue of every backend, and the backend classes
a URL can choose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailspool.queue import MemoryQueue, Queue, SQLiteQueue
from mailspool.urls import Plugins

BACKENDS = ["memory", "sqlite", "redis", "rabbitmq", "rabbitmq-redis"]


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """A fresh, empty queue of each backend. Distributed backends add themselves here with
    an isolated namespace per test, and skip (fail under CI) when their server is absent."""
    q: Queue
    if request.param == "redis":
        from mailspool.queue import RedisQueue

        q = RedisQueue(request.getfixturevalue("redis_url"))  # a prefix of its own
    elif request.param.startswith("rabbitmq"):
        from mailspool.queue import RabbitMQQueue

        # a queue prefix, and a PostgreSQL schema or a Redis key prefix, of its own
        ns = request.getfixturevalue(request.param.replace("-", "_"))
        q = RabbitMQQueue(url=ns.amqp(), store=ns.store)
    elif request.param == "memory":
        q = MemoryQueue()
    else:
        q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    yield q
    await q.close()


def classes(plugins: Plugins[Any]) -> list[type]:
    """Every class a URL can choose (importing a backend needs none of its extras)."""
    return sorted({plugins.get(scheme) for scheme in plugins.entries}, key=lambda c: c.__name__)
