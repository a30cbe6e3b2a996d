"""What the dashboard shows that no stored count holds, folded from the job events
(queue/events.py): per campaign, outcomes by recipient domain, the latest deferral and
dead-letter replies, and its final jobs second by second over the last ten minutes (its
rate chart); per job, its attempts (the replies of its deferrals, its death, its
delivery); per recipient address, its latest jobs (to look a message up by address).

The log is read on demand, when a dashboard page asks (every page polls), from the
oldest event kept: nothing is read while no one looks, and a server that never shows
the dashboard reads nothing. Each call reads at most :data:`PAGES_PER_CALL` pages, so a
long log is caught up over a few polls (``caught_up`` says when). Every table is bounded;
the oldest entries go first. A display only: nothing decides anything from it.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from mailspool.queue.events import Event, EventLog, EventType

PAGE = 1000
PAGES_PER_CALL = 20
MAX_CAMPAIGNS = 200
MAX_DOMAINS = 300
OTHER_DOMAINS = "(other domains)"
LATEST = 10
#: the rate chart's history: final jobs per second, for this many seconds back
SERIES_S = 600
MAX_TRAILS = 20_000
TRAIL_STEPS = 20
MAX_ADDRESSES = 50_000
JOBS_PER_ADDRESS = 5
#: the outcomes counted by domain
COUNTED = (
    EventType.SENT,
    EventType.DEFERRED,
    EventType.DEAD,
    EventType.SUPPRESSED,
    EventType.BOUNCED,
    EventType.COMPLAINED,
)
#: a job gets a trail (its attempts) with its first event of these types
TROUBLE = frozenset(
    {EventType.DEFERRED, EventType.DEAD, EventType.AMBIGUOUS, EventType.BOUNCED}
    | {EventType.COMPLAINED}
)


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a job: when, what, the reply or diagnostic, the dead reason or
    status code, the attempt it was."""

    at: float
    type: str
    detail: str
    reason: str
    attempts: int
    recipient: str


@dataclass(slots=True)
class CampaignDigest:
    domains: dict[str, Counter[str]] = field(default_factory=dict)
    deferrals: deque[Step] = field(default_factory=lambda: deque(maxlen=LATEST))
    deaths: deque[Step] = field(default_factory=lambda: deque(maxlen=LATEST))
    #: [second, final jobs in it], oldest first, the last SERIES_S seconds
    series: deque[list[int]] = field(default_factory=deque)

    def final(self, at: float) -> None:
        second = int(at)
        if self.series and self.series[-1][0] == second:
            self.series[-1][1] += 1
        else:
            self.series.append([second, 1])
        while self.series and self.series[0][0] < second - SERIES_S:
            self.series.popleft()

    def count(self, domain: str, kind: str) -> None:
        if domain not in self.domains and len(self.domains) >= MAX_DOMAINS:
            domain = OTHER_DOMAINS
        self.domains.setdefault(domain, Counter())[kind] += 1


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class EventDigest:
    """The folded events of one log (see the module docstring)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.cursor: str | None = None
        self.caught_up = False
        self.read = 0
        self._lock = asyncio.Lock()
        self._campaigns: OrderedDict[str, CampaignDigest] = OrderedDict()
        self._trails: OrderedDict[str, list[Step]] = OrderedDict()
        self._addresses: OrderedDict[str, deque[str]] = OrderedDict()

    async def refresh(self, pages: int = PAGES_PER_CALL) -> None:
        """Read what was written since the last call (at most ``pages`` pages)."""
        async with self._lock:
            for _ in range(pages):
                got = await self.log.read(self.cursor, PAGE)
                for event in got:
                    self.fold(event)
                if got:
                    self.cursor = got[-1].cursor
                self.read += len(got)
                if len(got) < PAGE:
                    self.caught_up = True
                    return
            self.caught_up = False

    def fold(self, e: Event) -> None:
        if not e.campaign:
            return  # an unsubscription that names no job
        digest = self._campaigns.pop(e.campaign, None) or CampaignDigest()
        self._campaigns[e.campaign] = digest  # the latest written last
        while len(self._campaigns) > MAX_CAMPAIGNS:
            self._campaigns.popitem(last=False)
        recipient = e.recipients[0] if e.recipients else ""
        if e.type in COUNTED:
            kind = "soft_bounced" if e.type is EventType.BOUNCED and not e.permanent else e.type
            digest.count(domain_of(recipient), str(kind))
        step = Step(e.at, str(e.type), e.detail, e.reason, e.attempts, recipient)
        if e.type in (EventType.SENT, EventType.DEAD):
            digest.final(e.at)
        if e.type is EventType.DEFERRED:
            digest.deferrals.append(step)
        elif e.type is EventType.DEAD:
            digest.deaths.append(step)
        self._trail(e, step)
        for address in e.recipients:
            self._address(address.lower(), e.job_id)

    def _trail(self, e: Event, step: Step) -> None:
        trail = self._trails.get(e.job_id)
        if trail is None:
            if e.type not in TROUBLE:
                return  # a job sent at its first try has nothing to tell
            trail = self._trails[e.job_id] = []
            while len(self._trails) > MAX_TRAILS:
                self._trails.popitem(last=False)
        trail.append(step)
        del trail[:-TRAIL_STEPS]

    def _address(self, address: str, job_id: str) -> None:
        jobs = self._addresses.pop(address, None) or deque(maxlen=JOBS_PER_ADDRESS)
        if job_id not in jobs:
            jobs.append(job_id)
        self._addresses[address] = jobs
        while len(self._addresses) > MAX_ADDRESSES:
            self._addresses.popitem(last=False)

    def campaign(self, name: str) -> CampaignDigest | None:
        return self._campaigns.get(name)

    def trail(self, job_id: str) -> list[Step]:
        return list(self._trails.get(job_id, ()))

    def jobs_of(self, address: str) -> list[str]:
        """The latest jobs seen for this recipient, newest first."""
        return list(reversed(self._addresses.get(address.lower(), ())))
