"""Job stores for queues that keep job state apart from the broker (RabbitMQ): PostgreSQL
or Redis, chosen by the URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from mailspool.errors import ConfigError
from mailspool.queue.store import JobStore, Ref

__all__ = ["JobStore", "Ref", "make_store", "store_class"]


def store_class(url: str) -> type[JobStore]:
    """The job store class for ``url``'s scheme, its driver not yet imported."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from mailspool.queue.postgres.store import PostgresStore  # optional: mailspool[postgres]

        return PostgresStore
    if scheme in ("redis", "rediss"):
        from mailspool.queue.redis.store import RedisJobStore  # optional: mailspool[redis]

        return RedisJobStore
    raise ConfigError(
        f"unsupported job store URL scheme {scheme + '://' if scheme else repr(url)}:"
        " use postgresql://user@host:5432/database or redis://host:6379/0"
    )


def make_store(url: str) -> JobStore:
    """A job store for ``url`` (not yet opened)."""
    return store_class(url)(url)  # type: ignore[call-arg]  # each concrete store takes its URL
