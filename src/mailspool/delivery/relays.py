"""Several relays behind one transport: priority, weights, routing by sender domain, and
failover. A relay that fails at the session (refused connection, TLS, 421 or 5xx
greeting, 535: what the relay gate pauses for) is paused with its own backoff, and the
message goes at once to the next usable relay, within the same attempt: no attempt is
charged for it. After its pause a relay is probed half-open (one message at a time)
until a message goes through, then used fully again. Only when every relay the message
may use is paused does the failure reach the worker, which defers the job as it does for
a single relay.

Which relay: those whose ``from_domains`` name the envelope sender's domain, else those
without ``from_domains``; among the usable ones of the lowest ``priority``, a smooth
weighted round robin by ``weight`` (nginx's: exact shares, evenly interleaved).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from mailspool.delivery.classify import Action, Verdict, classify
from mailspool.delivery.relay_gate import RelayGate
from mailspool.errors import ConnectError, DeliveryError, Stage
from mailspool.transport.base import Delivery, Envelope, Ready, Transport

__all__ = [
    "Relay",
    "RelaySet",
    "RelaySpec",
    "RelayState",
]


@dataclass(frozen=True, slots=True)
class RelaySpec:
    """A relay as configured: ``--smtp`` (several) or a ``[[relay]]`` table."""

    name: str
    url: str
    priority: int = 0
    weight: int = 1
    #: messages a second through this relay (None: only the worker's limits)
    rate: float | None = None
    #: messages in flight through this relay (0: only the worker's --concurrency)
    concurrency: int = 0
    #: sender domains whose mail goes only through this relay (and others naming them)
    from_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RelayState:
    """What ``status``, the API and the metrics show of a relay."""

    name: str
    state: str  # up, paused, probing
    sent: int
    failed: int
    paused_for: float  # seconds left of its pause
    reason: str  # why it was last paused ("" when never)


@dataclass(eq=False)
class Relay:
    spec: RelaySpec
    transport: Transport
    gate: RelayGate = field(default_factory=RelayGate)
    sent: int = 0
    failed: int = 0
    #: the smooth weighted round robin's running weight
    current: int = 0
    #: a pause ran out and no message has gone through since: one at a time
    probing: bool = False
    probe_in_flight: bool = False
    _next_at: float = 0.0
    _slots: asyncio.Semaphore | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def usable(self) -> bool:
        if self.gate.paused:
            return False
        return not (self.probing and self.probe_in_flight)

    def serves(self, domain: str) -> bool:
        return domain in self.spec.from_domains

    def pause(self, err: DeliveryError) -> None:
        self.gate.pause(err)
        self.probing = True  # after the pause: one message first

    def state(self) -> RelayState:
        err = self.gate.last_error
        state = "paused" if self.gate.paused else "probing" if self.probing else "up"
        return RelayState(
            self.name,
            state,
            self.sent,
            self.failed,
            round(self.gate.remaining(), 1),
            (err.reply if err is not None else "")[:300],
        )

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """This relay's own concurrency and rate, and the one probe while half-open."""
        spec = self.spec
        if spec.concurrency and self._slots is None:
            self._slots = asyncio.Semaphore(spec.concurrency)
        probe = self.probing
        if probe:
            self.probe_in_flight = True
        try:
            async with self._slots if self._slots is not None else contextlib.nullcontext():
                if spec.rate:
                    now = time.monotonic()
                    at = max(now, self._next_at)
                    self._next_at = at + 1.0 / spec.rate
                    if at > now:
                        await asyncio.sleep(at - now)
                yield
        finally:
            if probe:
                self.probe_in_flight = False


class RelaySet(Transport):
    """Delivers through ``relays`` (each with its transport), as the module says."""

    def __init__(self, relays: Sequence[Relay]) -> None:
        if not relays:
            raise ValueError("a relay set needs at least one relay")
        self.relays = list(relays)
        self.description = ", ".join(f"{r.name}={r.transport.description}" for r in relays)

    def states(self) -> list[RelayState]:
        return [r.state() for r in self.relays]

    @property
    def open_connections(self) -> int:
        return sum(getattr(r.transport, "open_connections", 0) for r in self.relays)

    def candidates(self, sender: str) -> list[Relay]:
        """The relays a message from ``sender`` may use, in no order."""
        domain = sender.rpartition("@")[2].lower()
        routed = [r for r in self.relays if r.serves(domain)]
        return routed or [r for r in self.relays if not r.spec.from_domains]

    def pick(self, allowed: Sequence[Relay], tried: set[str]) -> Relay | None:
        """The next relay among ``allowed`` not yet ``tried`` and usable: the lowest
        priority first, by weight within it."""
        usable = [r for r in allowed if r.name not in tried and r.usable()]
        if not usable:
            return None
        top = min(r.spec.priority for r in usable)
        tier = [r for r in usable if r.spec.priority == top]
        total = sum(r.spec.weight for r in tier)
        for r in tier:
            r.current += r.spec.weight
        best = max(tier, key=lambda r: r.current)
        best.current -= total
        return best

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        allowed = self.candidates(envelope.sender)
        if not allowed:
            raise ConnectError(
                f"no relay takes mail from {envelope.sender.rpartition('@')[2]}",
                stage=Stage.CONNECT,
            )
        once = _Once(ready)
        tried: set[str] = set()
        last: DeliveryError | None = None
        while (relay := self.pick(allowed, tried)) is not None:
            tried.add(relay.name)
            try:
                async with relay.turn():
                    delivery = await relay.transport.send(envelope, once)
            except DeliveryError as err:
                if envelope.slow_down is not None and envelope.slow_down(err):
                    raise  # the recipient's provider, not the relay: shaping slows it down
                relay.failed += 1
                verdict = classify(err)
                if not _elsewhere(err, verdict):
                    raise
                if verdict.action is Action.PAUSE:
                    relay.pause(err)
                last = err
                continue
            relay.sent += 1
            relay.probing = False
            relay.gate.success()
            return delivery
        if last is not None:
            raise last
        # every relay it may use is paused: the latest reason, for the worker to defer
        paused = [r.gate.last_error for r in allowed if r.gate.last_error is not None]
        raise paused[-1] if paused else ConnectError("every relay is paused", stage=Stage.CONNECT)

    async def close(self) -> None:
        for r in self.relays:
            await r.transport.close()


def _elsewhere(err: DeliveryError, verdict: Verdict) -> bool:
    """Whether the message may go to another relay at once: the relay is to be paused,
    or the connection failed before the message was under way (no reply and not at the
    final dot: it cannot have been accepted)."""
    if verdict.action is Action.PAUSE:
        return True
    return err.code is None and not verdict.ambiguous and err.stage is not Stage.DOT


class _Once:
    """``ready`` awaited once however many relays are tried (one rate-limit slot)."""

    def __init__(self, ready: Ready | None) -> None:
        self._ready = ready
        self._done = False

    async def __call__(self) -> None:
        if not self._done and self._ready is not None:
            self._done = True
            await self._ready()
