"""The servers some tests need (Redis, RabbitMQ, PostgreSQL): whether each is there, and
fixtures giving a test a namespace of its own on it, deleted afterwards.

A missing server skips the test locally and fails it under CI (``CI=true``), where every
server must be there.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(available: bool, what: str) -> None:
    """Skip when a service is missing locally; fail under CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI but is not available")
    pytest.skip(f"{what} is not available")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# -- Redis ------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("MAILSPOOL_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a key prefix of its own; every key under it is deleted afterwards.
    Skips when Redis is absent locally (fails under CI)."""
    need(redis_available(), f"Redis at {REDIS_URL}")
    import redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    with redis.Redis.from_url(REDIS_URL) as r:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            r.unlink(*keys[start : start + 1000])


# -- RabbitMQ and PostgreSQL ------------------------------------------------------------------

AMQP_URL = os.environ.get("MAILSPOOL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "MAILSPOOL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class RabbitMQNamespace:
    """A queue URL and a store URL with names of their own (queue prefix, schema, or the
    key prefix of a Redis store)."""

    base_amqp: str
    prefix: str
    schema: str
    redis_store: str | None = None  # the job store in Redis instead of PostgreSQL

    def amqp(self, base: str | None = None) -> str:
        return f"{base or self.base_amqp}?prefix={self.prefix}"

    @property
    def store(self) -> str:
        return self.redis_store or f"{POSTGRES_URL}?schema={self.schema}"


def drop_rabbitmq_namespace(ns: RabbitMQNamespace, amqp_base: str | None = None) -> None:
    """Delete the namespace's queues, exchange and schema (on a thread of its own, so that
    it works inside and outside a test's event loop)."""
    import asyncio
    import threading

    async def drop() -> None:
        import aio_pika
        import asyncpg

        try:
            conn = await aio_pika.connect(amqp_base or ns.base_amqp, timeout=10)
        except (aio_pika.exceptions.AMQPError, OSError):
            pass  # a private broker already stopped: nothing of ours is left on it
        else:
            async with conn:
                ch = await conn.channel()
                for queue in (f"{ns.prefix}.work", f"{ns.prefix}.dead"):
                    await ch.queue_delete(queue)
                await ch.exchange_delete(f"{ns.prefix}.dlx")
        if ns.redis_store is not None:
            return  # the redis_url fixture deletes the store's keys
        pg = await asyncpg.connect(POSTGRES_URL)
        try:
            await pg.execute(f"DROP SCHEMA IF EXISTS {ns.schema} CASCADE")
        finally:
            await pg.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(drop())
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]


def rabbitmq_available() -> bool:
    try:
        import aio_pika  # noqa: F401
        import asyncpg  # noqa: F401
    except ImportError:
        return False
    return port_open(5672) and port_open(5432)


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQNamespace]:
    """A RabbitMQ queue prefix and a PostgreSQL schema of this test's own, deleted
    afterwards. Skips when RabbitMQ or PostgreSQL is absent locally (fails under CI)."""
    need(rabbitmq_available(), "RabbitMQ (127.0.0.1:5672), PostgreSQL (127.0.0.1:5432)")
    token = uuid.uuid4().hex[:12]
    ns = RabbitMQNamespace(AMQP_URL, f"mstest-{token}", f"mstest_{token}")
    yield ns
    drop_rabbitmq_namespace(ns)


@pytest.fixture
def rabbitmq_redis(redis_url: str) -> Iterator[RabbitMQNamespace]:
    """A RabbitMQ queue prefix with its job store in Redis under a key prefix of its own,
    both deleted afterwards. Skips when RabbitMQ or Redis is absent locally (fails under
    CI)."""
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        need(False, "aio-pika (mailspool[rabbitmq])")
    need(port_open(5672), "RabbitMQ (127.0.0.1:5672)")
    token = uuid.uuid4().hex[:12]
    ns = RabbitMQNamespace(AMQP_URL, f"mstest-{token}", "", redis_store=redis_url)
    yield ns
    drop_rabbitmq_namespace(ns)
