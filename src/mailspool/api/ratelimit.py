"""A rate limit per client address, for the routes that need no token (``/u``).

A token bucket per address: ``burst`` requests at once, then ``rate`` a second. The
buckets live in this process, at most ``max_clients`` of them; beyond that the one used
least recently is dropped (it starts full again if its client comes back), so memory
stays bounded whatever the number of addresses. An IPv6 client is counted by its /64
network: one host usually holds a whole /64 and could otherwise take a new address per
request.

The address is the connection's peer, or the one a trusted reverse proxy puts in
``X-Forwarded-For`` (uvicorn reads it from the proxies in ``FORWARDED_ALLOW_IPS``,
127.0.0.1 and ::1 by default: see docs/deliverability.md).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

#: 30 requests a minute per address, 30 at once
DEFAULT_RATE = 0.5
DEFAULT_BURST = 30
MAX_CLIENTS = 10_000


def client_key(host: str | None) -> str:
    """What a client is counted by: its IPv4 address, its IPv6 /64, or the text given
    (a Unix socket's peer, or none)."""
    if not host:
        return "-"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client it names
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientLimits:
    """Token buckets by client (see the module docstring)."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate, burst and max_clients must be positive")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        #: client -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str | None, now: float | None = None) -> float:
        """Take one request's token for ``host``: 0.0 when allowed, else the seconds
        until the next one is (for Retry-After)."""
        now = time.monotonic() if now is None else now
        key = client_key(host)
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)  # the most recently used, last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """A Retry-After value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
