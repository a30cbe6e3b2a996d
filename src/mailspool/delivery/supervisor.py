"""The delivery child processes of one command (``--processes N``), and their parent's
watch over them.

    start    N children, spawned (a fresh interpreter each: no fork of a process with
             threads), each running ``target(spec, conn)``: its own event loop, queue
             connection, SMTP connections and lease owner
    watch    what each reports on its pipe (reporting.py): the parent's observers are
             told of its recorded outcomes and relay pauses (the run's progress and
             summary), its metrics go to ``metrics``; its calls of the shaping lanes are
             answered from ``lanes``, the one set of adapted provider rates of the run
    restart  a child that ends is reaped and its owner's leases handed back at once
             (``release_owner``: each such job counted ambiguous, as after a lease
             expiry); one that died (killed, or a non-zero exit) while not stopping is
             started again at once, or after a growing pause when it keeps dying young,
             and given up after :data:`GIVE_UP` such deaths in a row
    stop     :meth:`Supervisor.stop` forwards the graceful stop (finish in flight, hand
             back the rest), :meth:`Supervisor.quit` the stop-now; a parent cancelled
             while it waits (its second signal) quits its children

A child that ends with status 0 was stopped (by its parent, or a SIGTERM of its own) or,
draining, found nothing due: it is not replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from mailspool.children import start_child
from mailspool.delivery.observer import Observer
from mailspool.delivery.reporting import (
    HELLO,
    IDLE,
    LANES,
    METRICS,
    PAUSED,
    QUIT,
    RECORDED,
    STOP,
    outcomes,
    rebuild_error,
)
from mailspool.delivery.shaping import Lanes
from mailspool.delivery.worker import Worker
from mailspool.errors import QueueError
from mailspool.queue import LeaseAdmin
from mailspool.transport.base import Transport

__all__ = ["Delivering", "MetricsSink", "Processes", "Supervisor"]

log = logging.getLogger(__name__)

#: a child that dies sooner than this after its start died young
YOUNG = 10.0
#: the pause before starting again a child that died young, doubling up to MAX_PAUSE
FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0
#: deaths in a row, each young, after which a child is not started again
GIVE_UP = 5
#: how long children told to quit get before they are killed
QUIT_WAIT = 10.0
#: what a child may call of the lanes the parent holds
_LANE_CALLS = frozenset({"get", "update", "reserve", "restart"})


class MetricsSink(Protocol):
    """Where the children's metrics go (observe/merged.py): by the key of a child's run."""

    def update(self, key: int, families: Any) -> None: ...

    def retire(self, key: int) -> None:
        """That child has ended: keep its counts, drop its gauges."""
        ...


@dataclass(eq=False)
class _Child:
    slot: int
    key: int  # this run of the slot, for the metrics
    process: BaseProcess
    conn: Connection
    started: float
    owner: str | None = None
    reading: bool = True
    asked: list[asyncio.Future[None]] = field(default_factory=list)  # for its metrics


class Supervisor:
    """Starts ``processes`` children running ``target(spec, conn)`` (a picklable
    function and spec) and watches them until they end (the module says how).
    ``leases``: where a child's leases are handed back when it ends; ``observers``: told
    of the children's recorded outcomes and relay pauses; ``metrics``: gets their
    metrics; ``lanes``: the shaping lanes its children use (when not in Redis).
    ``idle``, when set, answers a child with nothing to claim that asks whether the run
    is over (without it: not over)."""

    def __init__(
        self,
        *,
        target: Callable[[Any, Connection], None],
        spec: Any,
        processes: int,
        leases: LeaseAdmin,
        observers: Sequence[Observer] = (),
        metrics: MetricsSink | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self.target = target
        self.lanes = lanes
        self.spec = spec
        self.processes = processes
        self.leases = leases
        self.observers = list(observers)
        self.metrics = metrics
        self.idle: Callable[[], Awaitable[bool]] | None = None
        self.gave_up = 0  # children not started again: they kept dying
        self._children: dict[int, _Child] = {}
        self._pending: dict[int, asyncio.TimerHandle] = {}  # restarts to come, by slot
        self._young: dict[int, int] = {}  # deaths in a row soon after start, by slot
        self._tasks: set[asyncio.Task[None]] = set()  # reaping children, answering them
        self._keys = itertools.count()
        self._stopping = False
        self._quitting = False
        self._done = asyncio.Event()

    @property
    def running(self) -> bool:
        """Children are running, ending or about to start again."""
        return bool(self._children or self._pending or self._tasks)

    async def start(self) -> None:
        for slot in range(self.processes):
            self._spawn(slot)

    def stop(self) -> None:
        """The graceful stop: no claims, messages in flight finish; nothing restarts."""
        self._tell_all(STOP)

    def quit(self) -> None:
        """Stop now, as a second signal does."""
        self._quitting = True
        self._tell_all(QUIT)

    async def ask_metrics(self, timeout: float) -> None:
        """Have every running child send its metrics now (a scrape); wait for their
        answers up to ``timeout`` seconds. One still starting up (no hello yet) is not
        asked: it listens only from then on, and has counted nothing."""
        loop = asyncio.get_running_loop()
        answers = []
        for child in self._children.values():
            if child.reading and child.owner is not None:
                with contextlib.suppress(OSError, ValueError):
                    child.conn.send(METRICS)
                    child.asked.append(loop.create_future())
                    answers.append(child.asked[-1])
        if answers:
            await asyncio.wait(answers, timeout=timeout)

    async def wait(self) -> None:
        """Until every child has ended and been reaped; cancelled (a second signal
        while waiting), the children are told to quit first."""
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            await self.ended_now()
            raise

    async def ended_now(self) -> None:
        """Quit the children, give them :data:`QUIT_WAIT` seconds, then kill the rest."""
        self.quit()
        deadline = time.monotonic() + QUIT_WAIT
        while any(c.process.is_alive() for c in self._children.values()):
            if time.monotonic() > deadline:
                for c in self._children.values():
                    c.process.kill()
                break
            await asyncio.sleep(0.05)

    # -- children -----------------------------------------------------------------------

    def _tell_all(self, message: str) -> None:
        self._stopping = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for child in self._children.values():
            with contextlib.suppress(OSError, ValueError):  # it is ending already
                child.conn.send(message)
        self._check_done()

    def _spawn(self, slot: int) -> None:
        self._pending.pop(slot, None)
        if self._stopping:
            return
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        mine, theirs = ctx.Pipe()
        process = ctx.Process(
            target=self.target,
            args=(self.spec, theirs),
            name=f"mailspool-delivery-{slot}",
            daemon=True,  # ended by multiprocessing if this process fails
        )
        start_child(process)  # deaf to Ctrl-C until it listens to this process
        theirs.close()
        child = _Child(slot, next(self._keys), process, mine, time.monotonic())
        self._children[slot] = child
        loop = asyncio.get_running_loop()
        loop.add_reader(mine.fileno(), self._read, child)
        loop.add_reader(process.sentinel, self._ended, child)
        log.debug("delivery process %d started: pid %s", slot, process.pid)

    def _read(self, child: _Child) -> None:
        try:
            while child.reading and child.conn.poll():
                self._dispatch(child, child.conn.recv())
        except (EOFError, OSError):
            self._stop_reading(child)

    def _stop_reading(self, child: _Child) -> None:
        if child.reading:
            child.reading = False
            asyncio.get_running_loop().remove_reader(child.conn.fileno())

    def _dispatch(self, child: _Child, message: Any) -> None:
        tag = message[0]
        if tag == RECORDED:
            done = outcomes(message[1])
            self._tell(lambda obs: obs.recorded(done))
        elif tag == LANES:
            self._keep(self._answer_lanes(child, message[1], message[2], message[3]))
        elif tag == IDLE:
            self._keep(self._answer_idle(child))
        elif tag == HELLO:
            child.owner = message[1]
        elif tag == PAUSED:
            err, delay = rebuild_error(message[1]), message[2]
            self._tell(lambda obs: obs.relay_paused(err, delay))
        elif tag == METRICS and self.metrics is not None:
            self.metrics.update(child.key, message[1])
            if message[2]:  # an answer: fresh since it was asked
                for answered in child.asked:
                    if not answered.done():
                        answered.set_result(None)
                child.asked.clear()

    def _tell(self, call: Callable[[Observer], object]) -> None:
        for obs in self.observers:
            try:
                call(obs)
            except Exception:  # an observer must not stop the supervision
                log.exception("observer %s failed", type(obs).__name__)

    def _ended(self, child: _Child) -> None:
        asyncio.get_running_loop().remove_reader(child.process.sentinel)
        self._read(child)  # what it said last
        self._stop_reading(child)
        child.conn.close()
        child.process.join()  # it has ended: reaped at once
        self._keep(self._reap(child))

    def _keep(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the supervisor waits for before it is done."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._check_done())

    async def _answer_lanes(self, child: _Child, call_id: int, op: str, args: Any) -> None:
        if self.lanes is None or op not in _LANE_CALLS:
            log.error("a delivery process called lanes %r that this process does not hold", op)
            return
        try:
            result = await getattr(self.lanes, op)(*args)
        except Exception:  # never expected of LocalLanes; the child's shaper waits on
            log.exception("lanes %s for a delivery process failed", op)
            return
        with contextlib.suppress(OSError, ValueError):  # it has ended meanwhile
            child.conn.send((LANES, call_id, result))

    async def _answer_idle(self, child: _Child) -> None:
        try:
            over = self.idle is not None and await self.idle()
        except Exception as exc:  # the queue did not answer: not over, ask again later
            log.warning("could not tell whether the run is over: %s", exc)
            over = False
        with contextlib.suppress(OSError, ValueError):  # it has ended meanwhile
            child.conn.send((IDLE, over))

    async def _reap(self, child: _Child) -> None:
        """Hand back its leases; start it again if it died."""
        code = child.process.exitcode
        released = 0
        if child.owner is not None:
            try:
                released = await self.leases.release_owner(child.owner)
            except QueueError as exc:  # they expire, or the next run reclaims them
                log.warning("could not hand back the leases of %s: %s", child.owner, exc)
        if self.metrics is not None:
            self.metrics.retire(child.key)
        del self._children[child.slot]
        if code == 0 or self._quitting:  # done, or told to stop now (it exits non-zero)
            log.debug(
                "delivery process %d ended with status %s (%d leases handed back)",
                child.slot,
                code,
                released,
            )
            return
        log.warning(
            "delivery process %d (pid %s) died with status %s; %d leases handed back%s",
            child.slot,
            child.process.pid,
            code,
            released,
            "" if self._stopping else ", starting another",
        )
        if not self._stopping:
            self._restart(child)

    def _restart(self, child: _Child) -> None:
        young = time.monotonic() - child.started < YOUNG
        deaths = self._young[child.slot] = self._young.get(child.slot, 0) + 1 if young else 0
        if deaths >= GIVE_UP:
            self.gave_up += 1
            log.error(
                "delivery process %d died %d times in a row within %.0f s of its start;"
                " not started again",
                child.slot,
                deaths,
                YOUNG,
            )
            return
        pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (deaths - 1)) if deaths else 0.0
        loop = asyncio.get_running_loop()
        self._pending[child.slot] = loop.call_later(pause, self._spawn, child.slot)

    def _check_done(self) -> None:
        if not self.running:
            self._done.set()


class Delivering(Protocol):
    """What ``send`` delivers with: one :class:`Worker`, or :class:`Processes`."""

    transport: Transport

    async def run(self, idle: Callable[[], Awaitable[bool]] | None = None) -> None: ...

    def stop(self) -> None: ...

    def stop_now(self) -> None: ...


class Processes:
    """A command's delivery by ``worker`` in this process and the children of
    ``supervisor``, as one: :meth:`run` ends when ``idle()`` says so, to this process's
    worker or to a child that asks it (the children then stop), or when stopped."""

    def __init__(self, supervisor: Supervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker
        self.transport = worker.transport

    def stop(self) -> None:
        self.supervisor.stop()
        self.worker.stop()

    def stop_now(self) -> None:
        self.supervisor.quit()
        self.worker.stop_now()

    async def run(self, idle: Callable[[], Awaitable[bool]] | None = None) -> None:
        async def over() -> bool:
            # one end for the whole run: once idle() says so to anyone, nobody claims
            if idle is not None and await idle():
                self.stop()
                return True
            return False

        self.supervisor.idle = over  # a child with nothing to claim asks it
        await self.supervisor.start()
        quitting = False
        try:
            await self.worker.run(over)
        except asyncio.CancelledError:  # a second signal: stop now
            quitting = True
            await self.supervisor.ended_now()
            raise
        finally:
            if not quitting:
                self.supervisor.stop()
                await self.supervisor.wait()
