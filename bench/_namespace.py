"""Each benchmark run on a shared server (Redis, RabbitMQ, PostgreSQL) in a namespace of
its own, removed after the run: every run starts empty, as with a fresh SQLite file, and
the servers do not fill up with the runs' jobs (Redis holds them in memory; PostgreSQL
without autovacuum would scan ever more dead rows).

Only names the benchmark made itself (they contain the run's id) are ever removed; a URL
that names its own ``prefix`` or ``schema`` is used as it is and left alone.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def _with_param(url: str, name: str, value: str) -> tuple[str, bool]:
    """``url`` with ``name=value`` added, unless it has that parameter already."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == name for k, _ in params):
        return url, False
    return urlunsplit(parts._replace(query=urlencode([*params, (name, value)]))), True


@dataclass
class Namespace:
    """The URLs of one run, and what to remove afterwards."""

    queue: str
    store: str | None
    redis: list[tuple[str, str]] = field(default_factory=list)  # (url, key prefix)
    amqp: list[tuple[str, str]] = field(default_factory=list)  # (url, queue prefix)
    schemas: list[tuple[str, str]] = field(default_factory=list)  # (url, schema)

    def cleanup(self) -> None:
        """Remove the run's namespace; a failure is reported, not raised, so that it never
        hides the run's own result."""
        if not (self.redis or self.amqp or self.schemas):
            return
        try:
            asyncio.run(self._cleanup())
        except Exception as exc:  # a server that went away, a missing client library
            print(f"warning: could not remove the run's data: {exc!r}", file=sys.stderr)

    async def _cleanup(self) -> None:
        for url, prefix in self.redis:
            import redis.asyncio as aioredis

            r = aioredis.Redis.from_url(_bare(url))
            try:
                keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
                for i in range(0, len(keys), 1000):
                    await r.unlink(*keys[i : i + 1000])
            finally:
                await r.aclose()
        for url, prefix in self.amqp:
            import aio_pika

            async with await aio_pika.connect(_bare(url)) as conn:
                ch = await conn.channel()
                for name in (f"{prefix}.work", f"{prefix}.dead"):
                    await ch.queue_delete(name)
                await ch.exchange_delete(f"{prefix}.dlx")
        for url, schema in self.schemas:
            import asyncpg

            con = await asyncpg.connect(_bare(url))
            try:
                await con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await con.close()


def _bare(url: str) -> str:
    """The server's address and credentials only: mailspool's own URL parameters (prefix,
    pool, reconnect_for, ...) mean nothing to the client libraries."""
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def namespace(queue: str, store: str | None, run_id: str) -> Namespace:
    """The run's queue and store URLs, each given a prefix or schema of the run's own."""
    ns = Namespace(queue, store)
    # scheme: (the URL parameter, its value, where the name is kept for the clean-up)
    redis = ("prefix", f"bench-{run_id}", ns.redis)
    amqp = ("prefix", f"bench-{run_id}", ns.amqp)
    postgres = ("schema", f"bench_{run_id}", ns.schemas)
    names = {"redis": redis, "rediss": redis, "amqp": amqp, "amqps": amqp}
    names |= {"postgresql": postgres, "postgres": postgres}
    for which in ("queue", "store"):
        url = getattr(ns, which)
        if url is None:
            continue
        scheme = urlsplit(url).scheme
        if scheme not in names:
            continue
        param, value, made = names[scheme]
        url, added = _with_param(url, param, value)
        if added:
            made.append((url, value))
        setattr(ns, which, url)
    return ns
