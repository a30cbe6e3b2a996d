"""Per-provider traffic shaping: each recipient domain's provider (providers.py) gets its
own connections, rate and adapted rate (adaptive.py), apart from every other provider's.

The worker asks :meth:`Shaper.admit` before each message. The answer never blocks a
sender, so a slow provider never holds up mail to the others:

- ``GO``: send now (a connection slot and, when the rate is limited, a rate slot taken);
- ``HELD``: the shaper keeps the job (still leased to the worker) and hands it back
  through ``requeue`` when its rate slot comes or a connection frees up;
- a :class:`Hold`: the provider is suspended, or its next slot is further off than the
  lease should be stretched: the worker hands the job back to the queue, due then,
  without charging it an attempt.

A reply matching the provider's throttling patterns (:meth:`Shaper.throttled`) cuts that
provider's rate; the job is admitted again, as a new one would be, with no attempt
charged. The adapted rates live in a :class:`Lanes` store: this process's own, or Redis
(shared_lanes.py), where every worker of a cluster shares them and their rate slots.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mailspool.delivery.adaptive import Adapted, climb, cut
from mailspool.delivery.mx import MXResolver
from mailspool.delivery.providers import Provider, Providers, Throttle
from mailspool.errors import DeliveryError
from mailspool.models import Job

__all__ = ["GO", "HELD", "Admission", "Hold", "Lanes", "LocalLanes", "Shaper"]

log = logging.getLogger(__name__)

#: seconds over which the rate messages actually went is measured (the base of a first cut)
SEEN_WINDOW = 5.0


class Admission(enum.Enum):
    GO = "go"
    HELD = "held"


GO = Admission.GO
HELD = Admission.HELD


@dataclass(frozen=True, slots=True)
class Hold:
    """Hand the job back to the queue, due at ``until``, leaving ``reply`` with it."""

    until: float
    reply: str


class Lanes(Protocol):
    """Where the adapted rates and the rate slots of every provider live."""

    async def get(self, names: Iterable[str]) -> dict[str, Adapted]:
        """The current adapted state of these providers (absent: never adapted)."""
        ...

    async def update(self, provider: Provider, change: Callable[[Adapted], Adapted]) -> Adapted:
        """Apply ``change`` to the provider's state atomically; returns the new state."""
        ...

    async def reserve(self, name: str, rate: float, horizon: float) -> float:
        """Take the provider's next rate slot if it is at most ``horizon`` seconds off:
        the seconds until it (>= 0); or, not taken, minus the seconds until it."""
        ...

    async def restart(self, name: str) -> None:
        """Forget the provider's schedule: the next slot is taken at the rate now (the
        slots reserved at a rate since cut are given up by their holders)."""
        ...

    async def close(self) -> None: ...


class LocalLanes:
    """The adapted rates of this process only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[str, Adapted] = {}
        self._next: dict[str, float] = {}

    async def get(self, names: Iterable[str]) -> dict[str, Adapted]:
        return {n: self._states[n] for n in names if n in self._states}

    async def update(self, provider: Provider, change: Callable[[Adapted], Adapted]) -> Adapted:
        state = change(self._states.get(provider.name) or Adapted.start(provider))
        self._states[provider.name] = state
        return state

    async def reserve(self, name: str, rate: float, horizon: float) -> float:
        now = self._clock()
        at = max(now, self._next.get(name, 0.0))
        if at - now > horizon:
            return -(at - now)
        self._next[name] = at + 1.0 / rate
        return at - now

    async def restart(self, name: str) -> None:
        self._next.pop(name, None)

    async def close(self) -> None:
        pass


@dataclass(eq=False)
class _Lane:
    provider: Provider
    state: Adapted
    in_flight: int = 0
    sent: int = 0
    throttles: int = 0
    waiting: collections.deque[Job] = field(default_factory=collections.deque)
    #: when recent messages were admitted, for the rate they actually went at
    admitted: collections.deque[float] = field(default_factory=collections.deque)

    def seen_rate(self, now: float) -> float:
        while self.admitted and self.admitted[0] < now - SEEN_WINDOW:
            self.admitted.popleft()
        if not self.admitted:
            return 0.0
        return len(self.admitted) / max(1.0, min(SEEN_WINDOW, now - self.admitted[0]))


@dataclass(frozen=True, slots=True)
class ProviderState:
    """What ``status``, the API and the metrics show of a provider."""

    name: str
    rate: float | None  # messages a second now (None: not limited)
    ceiling: float | None
    in_flight: int
    sent: int
    throttled: int
    suspended_for: float
    last_reply: str
    last_reply_at: float


class Shaper:
    """Admits the worker's messages provider by provider (the module says how).
    ``providers``: the rules, or what loads them when first needed (the shipped rules:
    reading them is no work for a command before its first message); ``requeue`` takes
    back a job the shaper held (the worker's buffer); ``horizon``: the furthest rate slot
    a job waits for while leased, rather than going back to the queue."""

    def __init__(
        self,
        providers: Providers | Callable[[], Providers],
        *,
        lanes: Lanes | None = None,
        resolver: MXResolver | None = None,
        horizon: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self.lanes = lanes or LocalLanes(clock)
        self.resolver = resolver
        self.horizon = horizon
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._reserved: set[str] = set()  # jobs holding a rate slot, waiting for it
        self._sending: dict[str, tuple[_Lane, float]] = {}  # job id -> lane, when sent
        self._timers: dict[str, tuple[asyncio.TimerHandle, Job, _Lane]] = {}
        self.requeue: Callable[[Job], None] = lambda job: None

    @property
    def providers(self) -> Providers:
        if not isinstance(self._providers, Providers):
            self._providers = self._providers()
        return self._providers

    async def provider(self, domain: str) -> Provider | None:
        found = self.providers.for_domain(domain)
        if found is None and self.resolver is not None and domain:
            found = self.providers.for_mx(await self.resolver.hosts(domain))
        return found

    def _lane(self, provider: Provider) -> _Lane:
        lane = self._lanes.get(provider.name)
        if lane is None:
            lane = self._lanes[provider.name] = _Lane(provider, Adapted.start(provider))
        return lane

    async def admit(self, job: Job) -> Admission | Hold:
        provider = await self.provider(job.domain)
        if provider is None:
            return GO
        lane = self._lane(provider)
        now = self._clock()
        state = lane.state
        if state.suspended(now):
            self._reserved.discard(job.id)
            why = f"held back: {provider.name} suspended: {state.reply}"
            return Hold(state.suspended_until, why)
        if provider.connections and lane.in_flight >= provider.connections:
            if len(lane.waiting) >= 4 * provider.connections:
                return Hold(now + 1.0, f"held back: {provider.name} connections busy")
            lane.waiting.append(job)
            return HELD
        if state.rate is not None and job.id not in self._reserved:
            held = await self._rate_slot(job, provider, state.rate, now)
            if held is not None:
                return held
        self._reserved.discard(job.id)
        lane.in_flight += 1
        lane.admitted.append(now)
        if lane.admitted[0] < now - SEEN_WINDOW:  # keep only the window's: bounded memory
            lane.seen_rate(now)
        self._sending[job.id] = (lane, now)
        return GO

    async def _rate_slot(
        self, job: Job, provider: Provider, rate: float, now: float
    ) -> Admission | Hold | None:
        """None when the job's rate slot is now; else whether it waits here or in the queue."""
        wait = await self.lanes.reserve(provider.name, rate, self.horizon)
        if wait < 0:
            return Hold(now - wait, f"held back: {provider.name} at {rate:.3g}/s")
        if wait <= 0.002:
            return None
        self._reserved.add(job.id)
        self._later(job, wait, self._lane(provider))
        return HELD

    def _later(self, job: Job, wait: float, lane: _Lane) -> None:
        def due() -> None:
            self._timers.pop(job.id, None)
            self.requeue(job)

        self._timers[job.id] = (asyncio.get_running_loop().call_later(wait, due), job, lane)

    def _respace(self, lane: _Lane) -> None:
        """The lane's rate was cut: the jobs waiting for slots taken at the old rate are
        admitted again, to take slots at the new one."""
        for job_id, (handle, job, of) in list(self._timers.items()):
            if of is lane:
                handle.cancel()
                del self._timers[job_id]
                self._reserved.discard(job_id)
                self.requeue(job)

    def per_connection(self, job_id: str) -> int:
        """Messages a connection carrying this admitted job's provider takes (0: any)."""
        entry = self._sending.get(job_id)
        return entry[0].provider.messages_per_connection if entry else 0

    def provider_of(self, job_id: str) -> str:
        entry = self._sending.get(job_id)
        return entry[0].provider.name if entry else ""

    def done(self, job_id: str, *, sent: bool = False) -> None:
        """The admitted job's message is no longer in flight."""
        entry = self._sending.pop(job_id, None)
        if entry is None:
            return
        lane = entry[0]
        lane.in_flight -= 1
        lane.sent += sent
        if lane.waiting:
            self.requeue(lane.waiting.popleft())

    def _matching(
        self, job_id: str, err: DeliveryError
    ) -> tuple[_Lane, float, Throttle, str] | None:
        entry = self._sending.get(job_id)
        if entry is None:
            return None
        lane, sent_at = entry
        replies = [(err.code, err.enhanced, err.text, err.reply)]
        replies += [_split(r) for r in err.refused.values()]
        for code, enhanced, text, reply in replies:
            pattern = lane.provider.throttled(code, enhanced, text)
            if pattern is not None:
                return lane, sent_at, pattern, reply
        return None

    def slows(self, job_id: str, err: DeliveryError) -> bool:
        """Whether ``err`` is the admitted job's provider saying "too fast"."""
        return self._matching(job_id, err) is not None

    async def throttled(self, job_id: str, err: DeliveryError) -> str | None:
        """When ``err`` is the job's provider saying "too fast": its rate cut (and maybe
        suspended), and the provider's name returned. Call before :meth:`done`."""
        found = self._matching(job_id, err)
        if found is None:
            return None
        lane, sent_at, pattern, reply = found
        provider = lane.provider
        now = self._clock()
        seen = lane.seen_rate(now)
        lane.throttles += 1
        # a partial, not a closure: lanes held by a parent process take it over a pipe
        change = functools.partial(
            cut, provider=provider, now=now, sent_at=sent_at, seen=seen, throttle=pattern,
            reply=reply,
        )  # fmt: skip
        before = lane.state.rate
        lane.state = await self.lanes.update(provider, change)
        if lane.state.rate is not None and (before is None or lane.state.rate < before):
            await self.lanes.restart(provider.name)
            self._respace(lane)
            log.warning(
                "provider %s: rate cut to %.3g/s (%s)", provider.name, lane.state.rate, reply
            )
        return provider.name

    async def refresh(self) -> None:
        """Take up what other workers adapted, and climb back where it has been quiet."""
        now = self._clock()
        shared = await self.lanes.get(self._lanes)
        for name, lane in self._lanes.items():
            if name in shared:
                before, lane.state = lane.state.rate, shared[name]
                if lane.state.rate is not None and (before is None or lane.state.rate < before):
                    self._respace(lane)  # another worker cut it
            if climb(lane.state, lane.provider, now) != lane.state:
                lane.state = await self.lanes.update(lane.provider, _climber(lane.provider, now))

    async def run(self, every: float = 1.0) -> None:
        """Refresh every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:  # Redis away for a moment: the copies here hold meanwhile
                log.warning("could not refresh the adapted provider rates", exc_info=True)

    def release_all(self) -> list[Job]:
        """Every job the shaper holds (the worker is stopping and hands them back)."""
        jobs: list[Job] = []
        for handle, job, _ in self._timers.values():
            handle.cancel()
            jobs.append(job)
        self._timers.clear()
        self._reserved.clear()
        for lane in self._lanes.values():
            jobs.extend(lane.waiting)
            lane.waiting.clear()
        return jobs

    def states(self) -> list[ProviderState]:
        now = self._clock()
        return [
            ProviderState(
                name=lane.provider.name,
                rate=None if lane.state.rate is None else round(lane.state.rate, 3),
                ceiling=lane.provider.rate,
                in_flight=lane.in_flight,
                sent=lane.sent,
                throttled=lane.throttles,
                suspended_for=round(max(0.0, lane.state.suspended_until - now), 1),
                last_reply=lane.state.reply,
                last_reply_at=lane.state.reply_at,
            )
            for lane in self._lanes.values()
        ]

    async def close(self) -> None:
        self.release_all()
        with contextlib.suppress(Exception):
            await self.lanes.close()


def _climber(provider: Provider, now: float) -> Callable[[Adapted], Adapted]:
    return functools.partial(climb, provider=provider, now=now)  # picklable, as above


def _split(reply: str) -> tuple[int | None, str | None, str, str]:
    """(code, enhanced, text, reply) of a recipient's stored reply ``421 4.7.0 slow``."""
    head, _, rest = reply.strip().partition(" ")
    if not (len(head) == 3 and head.isdigit()):
        return None, None, reply, reply
    word, _, text = rest.partition(" ")
    if word.count(".") == 2 and word.replace(".", "").isdigit():
        return int(head), word, text, reply
    return int(head), None, rest, reply
