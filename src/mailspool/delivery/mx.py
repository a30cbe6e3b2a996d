"""MX lookups for ``--resolve-mx``: a domain's mail exchanger host names, cached for as
long as the answer's TTL says (within bounds; a missing domain or an MX-less one for
five minutes, a failed lookup for one), so a campaign asks once per domain
rather than once per message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailspool.errors import ConfigError

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["MXResolver", "parse_nameserver"]

#: seconds an answer is kept at least and at most, whatever its TTL
MIN_TTL = 30.0
MAX_TTL = 86400.0
#: seconds "no such domain" or "no MX" is remembered
NEGATIVE_TTL = 300.0
#: seconds a failed lookup (timeout, refused) is remembered before asking again
FAILED_TTL = 60.0


def parse_nameserver(text: str) -> tuple[str, int]:
    """``127.0.0.1``, ``127.0.0.1:5353`` or ``[::1]:5353`` -> (address, port)."""
    import ipaddress

    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        host = host if closed else ""
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise ConfigError(f"bad DNS server {text!r}: give an IP address, e.g. 127.0.0.1:5353")
    return host, number


class MXResolver:
    """Looks MX records up with dnspython's resolver: the system's, or ``nameserver``
    (``(address, port)``) when given."""

    def __init__(
        self,
        nameserver: tuple[str, int] | None = None,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nameserver = nameserver
        self.timeout = timeout
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._pending: dict[str, asyncio.Future[tuple[str, ...]]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        self.lookups = 0  # queries sent, for tests and metrics

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            import dns.asyncresolver  # dnspython: only with --resolve-mx

            if self.nameserver is None:
                resolver = dns.asyncresolver.Resolver()
            else:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [self.nameserver[0]]
                resolver.port = self.nameserver[1]
            resolver.lifetime = self.timeout
            self._resolver = resolver
        return self._resolver

    async def hosts(self, domain: str) -> tuple[str, ...]:
        """The MX hosts of ``domain``, most preferred first (empty: none, or unknown)."""
        domain = domain.lower().rstrip(".")
        cached = self._cache.get(domain)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        pending = self._pending.get(domain)
        if pending is not None:  # one query per domain, however many senders ask
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[str, ...]] = asyncio.get_running_loop().create_future()
        self._pending[domain] = future
        try:
            ttl, hosts = await self._lookup(domain)
            self._cache[domain] = (self._clock() + ttl, hosts)
            future.set_result(hosts)
            return hosts
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when none waits
            raise
        finally:
            del self._pending[domain]

    async def _lookup(self, domain: str) -> tuple[float, tuple[str, ...]]:
        import dns.exception
        import dns.resolver

        self.lookups += 1
        try:
            answer = await self._get_resolver().resolve(domain, "MX")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return NEGATIVE_TTL, ()
        except dns.exception.DNSException:
            return FAILED_TTL, ()
        records = sorted(answer, key=lambda r: (r.preference, str(r.exchange)))
        hosts = tuple(str(r.exchange).rstrip(".").lower() for r in records)
        ttl = answer.rrset.ttl if answer.rrset is not None else MIN_TTL
        return _clamp(float(ttl)), hosts


def _clamp(ttl: float) -> float:
    return min(MAX_TTL, max(MIN_TTL, ttl))
