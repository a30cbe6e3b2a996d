"""Delivering job events to webhook endpoints: at least once, with backoff, for a retry
period (three days by default), then dead-lettered per endpoint.

One task per endpoint. Each round it takes the endpoint's lease in the job store (so
that of several processes sharing a queue one delivers to it at a time), retries the
failed events that are due, then reads the events after the endpoint's cursor and posts
those it wants, several at once over keep-alive connections. An event that fails is
stored as pending (due again after a backoff) before the cursor moves past it, so no
event is lost between a failure and a crash. After :data:`BREAKER` failures in a row an
endpoint counts as down: new events then wait in the log, unread, and only the earliest
pending one is tried, as a probe, until one succeeds; events left unread longer than the
retry period are dead-lettered without a try.

Delivery runs beside mail delivery and never holds it up: a slow endpoint only delays
its own events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailspool.queue.events import Event, EventLog, Pending
from mailspool.tasks import cancel_and_wait
from mailspool.webhooks.endpoints import WebhookEndpoint
from mailspool.webhooks.http import HttpClient, HttpError
from mailspool.webhooks.payload import event_body
from mailspool.webhooks.pruning import kept_for, prune_loop
from mailspool.webhooks.signing import WebhookSecrets

__all__ = ["BACKOFF", "DispatchSettings", "Dispatcher", "EndpointCounts"]

log = logging.getLogger(__name__)

#: seconds before the next try, after the 1st, 2nd, ... failure (then the last, again)
BACKOFF = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0)
#: failures in a row after which an endpoint counts as down
BREAKER = 5
#: an endpoint's cursor is written to the job store at most this often (seconds)
PERSIST_EVERY = 1.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    timeout: float = 10.0
    connections: int = 8
    retry_period: float = 3 * DAY
    #: events older than this are pruned from the log (at least the retry period)
    retention: float = 7 * DAY
    lease: float = 60.0
    poll: float = 0.5
    batch: int = 200
    #: after a round that found fewer events than a batch, wait this long for more (a
    #: round's reads and writes then serve a batch, not a handful)
    gather: float = 0.1
    #: look for failed events that are due again at most this often
    retry_check: float = 1.0
    #: the backoff schedule (tests make it short)
    backoff: tuple[float, ...] = BACKOFF


@dataclass(slots=True)
class EndpointCounts:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    last_error: str = ""


def backoff(schedule: Sequence[float], attempts: int) -> float:
    """The wait after ``attempts`` failures, with a jitter of up to a fifth either way
    (so that many events that failed together are not all tried again together)."""
    base = schedule[min(attempts, len(schedule)) - 1]
    return base * random.uniform(0.8, 1.2)


def make_dispatcher_owner() -> str:
    return f"webhooks:{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Dispatcher:
    """Delivers the events of ``log`` to ``endpoints``, signing each request."""

    def __init__(
        self,
        log_: EventLog,
        endpoints: Sequence[WebhookEndpoint],
        secrets: WebhookSecrets | None,
        settings: DispatchSettings | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.log = log_
        self.endpoints = list(endpoints)
        if self.endpoints and secrets is None:
            raise ValueError("webhook endpoints need the signing secrets")
        self.secrets = secrets
        self.settings = settings or DispatchSettings()
        self.owner = make_dispatcher_owner()
        self.counts = {ep.name: EndpointCounts() for ep in self.endpoints}
        self._tls = tls
        self._clients: dict[str, HttpClient] = {}
        self._down: dict[str, int] = {ep.name: 0 for ep in self.endpoints}
        self._wake = asyncio.Event()
        #: endpoints whose pending events are tried once more now, not after their backoff
        self._hurried: set[str] = set()
        #: each held endpoint's cursor, and when its lease is to be renewed (monotonic)
        self._cursor: dict[str, str | None] = {}
        self._renew_at: dict[str, float] = {}
        #: cursors not yet written to the job store, and when each endpoint's last was
        self._unsaved: dict[str, str] = {}
        self._saved_at: dict[str, float] = {}
        #: endpoints being drained: every cursor written at once
        self._hurrying: set[str] = set()
        #: whether an endpoint's last round read a whole batch (more may be waiting)
        self._full: dict[str, bool] = {}
        #: when each endpoint's failed events were last looked at (monotonic)
        self._retry_checked: dict[str, float] = {}

    def client(self, ep: WebhookEndpoint) -> HttpClient:
        c = self._clients.get(ep.name)
        if c is None:
            s = self.settings
            c = HttpClient(ep.url, timeout=s.timeout, connections=s.connections, tls=self._tls)
            self._clients[ep.name] = c
        return c

    def wake(self) -> None:
        """New events were written: look now rather than at the next poll."""
        self._wake.set()

    def hurry(self) -> None:
        """Before a stop: try every endpoint's pending events once more now, whatever
        their backoff says (once; a down endpoint still gets one probe)."""
        self._hurried = {ep.name for ep in self.endpoints}
        self._hurrying = set(self._hurried)
        self.wake()

    async def start(self) -> None:
        """Take each endpoint once, so that one new to this store starts at the newest
        event now: it gets what is written from here on."""
        for ep in self.endpoints:
            await self._take(ep.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; store errors are logged and retried."""
        tasks = [asyncio.create_task(self._loop(ep, stop)) for ep in self.endpoints]
        keep = kept_for(self.settings.retention, self.settings.retry_period)
        tasks.append(asyncio.create_task(prune_loop(self.log, keep, stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)
            await self._let_go()
            await self.aclose()

    async def _let_go(self) -> None:
        """Hand the endpoints back: a lease that ends now, so that another process (the
        next worker) takes them at once instead of after the lease."""
        for ep in self.endpoints:
            with contextlib.suppress(Exception):
                await self._save(ep.name)
            self._renew_at.pop(ep.name, None)
            with contextlib.suppress(Exception):
                await self.log.lease(ep.name, self.owner, 0.001)

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()

    async def _loop(self, ep: WebhookEndpoint, stop: asyncio.Event) -> None:
        delay = self.settings.poll
        while not stop.is_set():
            try:
                worked = await self.step(ep)
                delay = self.settings.poll
            except Exception as exc:  # a store error: say so, wait, try again
                log.warning("webhook %s: delivery round failed, retrying: %s", ep.name, exc)
                worked, delay = False, min(30.0, delay * 2)
            caught_up = not self._full.get(ep.name, False)
            if not worked or (caught_up and ep.name not in self._hurrying):
                self._wake.clear()
                wait = delay if not worked else self.settings.gather
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await _first(stop, self._wake)

    async def step(self, ep: WebhookEndpoint) -> bool:
        """One round for ``ep``; whether it did anything (else wait before the next)."""
        s = self.settings
        if not await self._take(ep.name):
            return False  # another process delivers to it
        cursor = self._cursor[ep.name]
        now = time.time()
        down = self._down[ep.name] >= BREAKER
        hurried = ep.name in self._hurried
        self._hurried.discard(ep.name)
        due_by = now + s.retry_period if hurried else now
        worked = False
        checked = self._retry_checked.get(ep.name, 0.0)
        if hurried or down or time.monotonic() >= checked + s.retry_check:
            self._retry_checked[ep.name] = time.monotonic()
            worked = await self._retry_due(ep, now, due_by, 1 if down else s.batch)
        if self._down[ep.name] >= BREAKER:
            return await self._expire_unread(ep, cursor, now) or worked
        events = await self.log.read(cursor, s.batch)
        self._full[ep.name] = len(events) >= s.batch
        if not events:
            await self._save(ep.name)  # caught up: the store says so too
            return worked
        wanted = [e for e in events if ep.wants(e.type)]
        failed = await self._post_all(ep, wanted)
        if failed:
            await self.log.put_pending(
                ep.name,
                [
                    self._failure(ep.name, Pending(e.cursor, 0, now, now), err, now)
                    for e, err in failed
                ],
            )
        await self._advance(ep.name, events[-1].cursor)
        return True

    async def _take(self, name: str) -> bool:
        """Whether this dispatcher holds the endpoint: its lease is renewed (a write to
        the job store) only once a third of it has passed, not every round."""
        now = time.monotonic()
        if now < self._renew_at.get(name, 0.0):
            return True
        state = await self.log.lease(name, self.owner, self.settings.lease)
        if state is None:
            self._renew_at.pop(name, None)
            return False
        self._cursor[name] = state.cursor  # the store's: another may have moved it
        self._renew_at[name] = now + self.settings.lease / 3
        return True

    async def _advance(self, name: str, cursor: str, *, now: bool = False) -> None:
        """Move past ``cursor``: here at once, in the job store at most every
        :data:`PERSIST_EVERY` seconds (each is a durable write, which the mail delivery
        sharing the store waits for) unless ``now``, or when hurried. A crash before it
        is written sends those events again: at least once, as promised."""
        self._cursor[name] = cursor
        self._unsaved[name] = cursor
        due = time.monotonic() >= self._saved_at.get(name, 0.0) + PERSIST_EVERY
        if now or due or name in self._hurrying:
            await self._save(name)

    async def _save(self, name: str) -> None:
        cursor = self._unsaved.pop(name, None)
        if cursor is None:
            return
        self._saved_at[name] = time.monotonic()
        if not await self.log.advance(name, self.owner, cursor):
            self._renew_at.pop(name, None)  # the lease was lost: taken again, or not

    async def _retry_due(self, ep: WebhookEndpoint, now: float, by: float, limit: int) -> bool:
        due = await self.log.due(ep.name, by, limit)
        if not due:
            return False
        found = {e.cursor: e for e in await self.log.get([p.cursor for p in due])}
        gone = [p.cursor for p in due if p.cursor not in found]  # pruned meanwhile
        by_cursor = {p.cursor: p for p in due}
        failed = await self._post_all(ep, [found[p.cursor] for p in due if p.cursor in found])
        bad = {e.cursor for e, _ in failed}
        done = gone + [c for c in found if c not in bad]
        await self.log.drop_pending(ep.name, done)
        await self.log.put_pending(
            ep.name, [self._failure(ep.name, by_cursor[e.cursor], err, now) for e, err in failed]
        )
        return True

    async def _expire_unread(self, ep: WebhookEndpoint, cursor: str | None, now: float) -> bool:
        """While ``ep`` is down: dead-letter the unread events older than the retry
        period (without a try) and move past them."""
        limit = now - self.settings.retry_period
        events = await self.log.read(cursor, self.settings.batch)
        old = [e for e in events if e.at < limit]
        if not old:
            return False
        wanted = [e for e in old if ep.wants(e.type)]
        dead = [Pending(e.cursor, 0, now, e.at, "endpoint down", dead=True) for e in wanted]
        await self.log.put_pending(ep.name, dead)
        await self._advance(ep.name, old[-1].cursor)
        self.counts[ep.name].dead += len(dead)
        log.warning("webhook %s: %d events dead-lettered unsent (endpoint down)", ep.name, len(old))
        return True

    def _failure(self, name: str, p: Pending, error: str, now: float) -> Pending:
        """``p`` after one more failure: due again after the backoff, or dead when that
        next try would come after the retry period (counted from the first failure)."""
        attempts = p.attempts + 1
        first = p.first_at if p.attempts else now
        wait = backoff(self.settings.backoff, attempts)
        if now + wait - first > self.settings.retry_period:
            self.counts[name].dead += 1
            return Pending(p.cursor, attempts, now, first, error, dead=True)
        return Pending(p.cursor, attempts, now + wait, first, error)

    async def _post_all(
        self, ep: WebhookEndpoint, events: Sequence[Event]
    ) -> list[tuple[Event, str]]:
        """Post each event (as many at once as the client has connections); the events
        that failed, with why."""
        if not events:
            return []
        # a long round (a slow endpoint) must not lose the endpoint to another process
        renew = asyncio.create_task(self._keep_lease(ep))
        try:
            results = await self._post_batch(ep, events)
        finally:
            renew.cancel()
        counts = self.counts[ep.name]
        failed = [(e, err) for e, err in zip(events, results, strict=True) if err is not None]
        counts.delivered += len(events) - len(failed)
        counts.failed += len(failed)
        if failed:
            counts.last_error = failed[-1][1]
            # every one failed: the endpoint may be down (a partial failure says it is up)
            all_failed = len(failed) == len(events)
            self._down[ep.name] = self._down[ep.name] + len(failed) if all_failed else 0
            log.warning(
                "webhook %s: %d of %d events failed: %s",
                ep.name, len(failed), len(events), counts.last_error,
            )  # fmt: skip
        else:
            self._down[ep.name] = 0
        return failed

    async def _keep_lease(self, ep: WebhookEndpoint) -> None:
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            self._renew_at.pop(ep.name, None)  # renewed now, not skipped
            with contextlib.suppress(Exception):  # else the next round's lease says
                await self._take(ep.name)

    async def _post_batch(self, ep: WebhookEndpoint, events: Sequence[Event]) -> list[str | None]:
        """Post each event, signed; None for each one taken (2xx), else why not."""
        assert self.secrets is not None  # checked when made with endpoints
        client = self.client(ep)
        now = int(time.time())
        requests = []
        for e in events:
            eid = e.id
            body = event_body(e, eid)
            requests.append(client.request(body, self.secrets.headers(eid, now, body)))
        return [
            str(r) if isinstance(r, HttpError) else None if 200 <= r < 300 else f"HTTP {r}"
            for r in await client.post_many(requests)
        ]


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
