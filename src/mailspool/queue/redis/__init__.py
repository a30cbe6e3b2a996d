"""Redis Streams: the queue (:class:`~mailspool.queue.redis.queue.RedisQueue`), and a job
store for the RabbitMQ queue (:class:`~mailspool.queue.redis.store.RedisJobStore`).

Outside this folder, use the classes through :mod:`mailspool.queue` (``QUEUES``,
``STORES``, or by name). This package exports only the connection helpers, which the Redis
rate limits (:mod:`mailspool.delivery.limits.redis`) share: the ``redis://`` URL
(:func:`parse_redis_url`, :class:`RedisTarget`), the client (:func:`connect`), and retrying
while Redis is unreachable (:class:`Reconnect`, :func:`backoff_delays`).

The modules are this backend's own; the public names they share with each other are
internals, not part of mailspool's interface:

- ``connection``: the URL, the client, reconnecting (exported above);
- ``queue``: the queue, its key layout and its semantics;
- ``encoding``: jobs to script arguments and back (the store uses the same job hashes);
- ``scripts``, ``admin_scripts``, ``campaign_scripts``: the queue's Lua scripts and
  their common ``PRELUDE``;
- ``store``, ``store_scripts``: the job store, over the queue's layout, and its scripts;
- ``suppressions``: the suppression list of both, its keys and its scripts;
- ``returns``: returned mail of both (bounces, complaints, unmatched messages).
"""

from mailspool.queue.redis.connection import (
    Reconnect,
    RedisTarget,
    backoff_delays,
    connect,
    parse_redis_url,
)

__all__ = ["Reconnect", "RedisTarget", "backoff_delays", "connect", "parse_redis_url"]
