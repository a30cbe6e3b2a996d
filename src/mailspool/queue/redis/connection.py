"""Connecting to Redis: the ``redis://`` URL, the client, and retrying while Redis is
unreachable (shared by the Redis queue and the Redis rate limits)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.urls import redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")
log = structlog.get_logger("mailspool.redis")

DEFAULT_PREFIX = "mailspool"
DEFAULT_RECONNECT_FOR = 120.0
_OUR_PARAMS = ("prefix", "reconnect_for")
_BAD_PREFIX_CHARS = set("*?[]\\ \t\r\n")


# -- the URL ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RedisTarget:
    """A parsed ``redis://`` URL: ``client_url`` is what redis-py connects to (our own
    options removed), ``prefix`` namespaces every key, ``reconnect_for`` is how many
    seconds an operation keeps retrying while Redis is unreachable, and ``redacted`` the
    URL to show (no password)."""

    client_url: str
    prefix: str
    reconnect_for: float
    redacted: str


def parse_redis_url(url: str) -> RedisTarget:
    """Our options (``prefix``, ``reconnect_for``) taken out of ``url`` and checked; the
    rest stays for redis-py. ConfigError when they are bad."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise ConfigError(f"not a Redis URL: {redact_url(url)}")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in _OUR_PARAMS:
            ours[k] = v
        else:
            rest.append((k, v))
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    if not prefix or set(prefix) & _BAD_PREFIX_CHARS:
        raise ConfigError(f"bad Redis key prefix {prefix!r}: no spaces, *, ?, [ or ]")
    try:
        reconnect_for = float(ours.get("reconnect_for", DEFAULT_RECONNECT_FOR))
    except ValueError:
        raise ConfigError(f"bad reconnect_for in {redact_url(url)}: a number of seconds") from None
    if not 0 <= reconnect_for < 86400:
        raise ConfigError(f"bad reconnect_for in {redact_url(url)}: 0 to 86400 seconds")
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return RedisTarget(
        client_url=client_url, prefix=prefix, reconnect_for=reconnect_for, redacted=redact_url(url)
    )


def connect(target: RedisTarget) -> Redis:
    """A redis-py asyncio client (bytes replies; retries are ours, see ``Reconnect``)."""
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # the optional extra
        raise MissingExtra("redis", "redis") from exc
    try:
        return Redis.from_url(
            target.client_url,
            decode_responses=False,
            socket_connect_timeout=5,
            socket_timeout=30,
            socket_keepalive=True,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {target.redacted}: {exc}") from exc


# -- reconnecting -------------------------------------------------------------------------


def backoff_delays(
    base: float = 0.05, cap: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Exponential backoff with jitter: each delay is drawn from the upper half of
    ``base * 2**n``, capped at ``cap``, so workers that lost Redis together do not all
    come back in the same instant."""
    rand = rng or random.Random()
    n = 0
    while True:
        ceiling = min(cap, base * 2**n)
        yield ceiling * (0.5 + rand.random() / 2)
        n += 1


def _retryable() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

    # ConnectionError covers BusyLoadingError (Redis is loading its data after a restart);
    # ReadOnlyError: we reached a replica during a failover
    return (ConnectionError, TimeoutError, ReadOnlyError, OSError)


class Reconnect:
    """Runs one Redis operation, retrying with backoff while Redis is unreachable, for at
    most ``window`` seconds, then raises :class:`QueueError`. Other Redis errors become a
    QueueError at once. Every operation retried here is one atomic script or read, so a
    retry after a lost reply at worst finds its own earlier effect (see the scripts).
    ``where`` names the Redis server (its redacted URL) in logs and errors."""

    def __init__(self, where: str, window: float) -> None:
        self.where = where
        self.window = window
        self.outages = 0  # for tests and logs

    async def run(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        retryable = _retryable()
        started: float | None = None
        delays = backoff_delays()
        while True:
            try:
                result = await fn()
            except retryable as exc:
                now = time.monotonic()
                if started is None:
                    started = now
                    self.outages += 1
                    log.warning(
                        "redis unreachable, retrying",
                        redis=self.where,
                        operation=what,
                        error=str(exc),
                        give_up_after_s=self.window,
                    )
                if now - started >= self.window:
                    raise QueueError(
                        f"{self.where}: {what}: Redis unreachable for {now - started:.0f}s: {exc}"
                    ) from exc
                await asyncio.sleep(min(next(delays), self.window - (now - started) + 0.01))
                continue
            except RedisError as exc:
                raise QueueError(f"{self.where}: {what}: {exc}") from exc
            if started is not None:
                outage = round(time.monotonic() - started, 2)
                log.warning("redis reachable again", redis=self.where, outage_s=outage)
            return result
