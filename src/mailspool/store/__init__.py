"""Job stores for queues that keep job state apart from the broker (RabbitMQ): PostgreSQL
or Redis, chosen by the URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from mailspool.errors import ConfigError
from mailspool.store.base import JobStore, Ref

__all__ = ["JobStore", "Ref", "make_store", "store_packs_messages"]


def store_packs_messages(url: str) -> bool:
    """Whether the store for ``url`` stores messages packed, known before it is made."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from mailspool.store.postgres import PostgresStore  # no driver imported yet

        return PostgresStore.packs_messages
    if scheme in ("redis", "rediss"):
        from mailspool.store.redis import RedisJobStore

        return RedisJobStore.packs_messages
    return False


def make_store(url: str) -> JobStore:
    """A job store for ``url`` (not yet opened)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        from mailspool.store.postgres import PostgresStore  # optional: mailspool[postgres]

        return PostgresStore(url)
    if scheme in ("redis", "rediss"):
        from mailspool.store.redis import RedisJobStore  # optional: mailspool[redis]

        return RedisJobStore(url)
    raise ConfigError(
        f"unsupported job store URL scheme {scheme + '://' if scheme else repr(url)}:"
        " use postgresql://user@host:5432/database or redis://host:6379/0"
    )
