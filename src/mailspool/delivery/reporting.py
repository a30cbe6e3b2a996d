"""The pipe between a delivery child process and its parent (``--processes N``): what the
child reports and what the parent asks (the parent's side is supervisor.py).

========================  =====  ===========================================================
message                   from   meaning
========================  =====  ===========================================================
``("hello", owner)``      child  its worker's lease owner: the parent hands back that
                                 owner's leases when the child ends
``("recorded", pairs)``   child  outcomes now durable, as (state value, ambiguous) pairs:
                                 the parent's progress and summary count them
``("paused", err, s)``    child  a relay-level failure paused its relay for ``s`` seconds
                                 (``err``: the DeliveryError's fields)
``("metrics", f, asked)`` child  its Prometheus metrics now (observe/merged.py): every
                                 second, and (``asked``) as the answer to ``"metrics"``
``("idle",)``             child  it has nothing to claim: is the run over? (``send``: the
                                 parent's ``idle()`` decides, with one --max-wait deadline)
``("idle", answer)``      parent the answer
``("lanes", id, op, a)``  child  a call of the shaping lanes the parent holds
                                 (:class:`ParentLanes`): ``get``, ``update``, ``reserve``,
                                 ``restart`` with arguments ``a``
``("lanes", id, result)`` parent its result
``"metrics"``             parent send them now (a scrape of the parent's endpoint)
``"stop"``                parent stop claiming; finish the messages in flight (a first
                                 SIGINT or SIGTERM, forwarded)
``"quit"``                parent stop now (a second one)
========================  =====  ===========================================================

A child whose parent goes away (the pipe closes: killed, crashed) stops as on ``"stop"``:
it finishes what it has in flight and hands back the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from mailspool import errors
from mailspool.delivery.adaptive import Adapted
from mailspool.delivery.observer import Observer
from mailspool.delivery.providers import Provider
from mailspool.delivery.shaping import LocalLanes
from mailspool.errors import DeliveryError
from mailspool.models import Outcome, State

__all__ = [
    "HELLO",
    "IDLE",
    "LANES",
    "METRICS",
    "PAUSED",
    "QUIT",
    "RECORDED",
    "STOP",
    "ErrorFields",
    "ParentLanes",
    "ParentLink",
    "error_fields",
    "outcomes",
    "rebuild_error",
]

HELLO = "hello"
IDLE = "idle"
LANES = "lanes"
RECORDED = "recorded"
PAUSED = "paused"
METRICS = "metrics"
STOP = "stop"
QUIT = "quit"

#: a DeliveryError as plain data: class name, text, code, enhanced code, stage value
ErrorFields = tuple[str, str, int | None, str | None, str]


def error_fields(err: DeliveryError) -> ErrorFields:
    """``err`` as picklable data (an exception pickles with its message alone)."""
    return (type(err).__name__, err.text, err.code, err.enhanced, err.stage.value)


def rebuild_error(fields: ErrorFields) -> DeliveryError:
    """The DeliveryError of :func:`error_fields`, of the same class."""
    name, text, code, enhanced, stage = fields
    cls = getattr(errors, name, DeliveryError)
    if not (isinstance(cls, type) and issubclass(cls, DeliveryError)):
        cls = DeliveryError
    return cls(text, code=code, enhanced=enhanced, stage=stage)


def outcomes(pairs: Sequence[tuple[str, bool]]) -> list[Outcome]:
    """Outcomes standing for a child's recorded ones: their states and ambiguity, what
    counting observers (the summary's Counter, the progress) look at; no job ids."""
    return [Outcome("", State(state), ambiguous=ambiguous) for state, ambiguous in pairs]


class _Forwarder(Observer):
    """Tells the parent what its own observers count: recorded outcomes, relay pauses."""

    def __init__(self, link: ParentLink) -> None:
        self.link = link

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        self.link.send((RECORDED, [(o.state.value, o.ambiguous) for o in outcomes]))

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        self.link.send((PAUSED, error_fields(err), delay))


class ParentLink:
    """A delivery child's end of the pipe ``conn`` to its parent."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.gone = False  # the parent went away
        self._answers: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()

    def send(self, message: Any) -> None:
        """Send ``message``; a parent that is gone is noticed by :meth:`listen`."""
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
            self.conn.send(message)

    def hello(self, owner: str) -> None:
        self.send((HELLO, owner))

    async def idle(self) -> bool:
        """Whether the run is over, as the parent's ``idle()`` says (False once the
        parent is gone: the child is stopping then)."""
        if self.gone:
            return False
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        self.send((IDLE,))
        return await answer

    async def call(self, op: str, *args: Any) -> Any:
        """``op(*args)`` of the lanes the parent holds; raises :class:`ParentGone`."""
        if self.gone:
            raise ParentGone
        call_id = next(self._ids)
        result = self._calls[call_id] = asyncio.get_running_loop().create_future()
        self.send((LANES, call_id, op, args))
        return await result

    def _returned(self, call_id: int, value: Any) -> None:
        result = self._calls.pop(call_id, None)
        if result is not None and not result.done():
            result.set_result(value)

    def _answered(self, value: bool) -> None:
        if self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_result(value)

    def forwarder(self) -> Observer:
        """The observer that reports a worker's outcomes and relay pauses to the parent."""
        return _Forwarder(self)

    def listen(
        self,
        *,
        stop: Callable[[], None],
        stop_now: Callable[[], None],
        metrics: Callable[[], None] = lambda: None,
    ) -> None:
        """Call ``stop`` on ``"stop"`` or when the parent goes away, ``stop_now`` on
        ``"quit"``, ``metrics`` on ``"metrics"``; from the event loop the child runs on."""
        loop = asyncio.get_running_loop()
        fd = self.conn.fileno()

        def readable() -> None:
            try:
                while self.conn.poll():
                    asked = self.conn.recv()
                    if isinstance(asked, tuple) and asked[0] == LANES:
                        self._returned(asked[1], asked[2])
                    elif isinstance(asked, tuple) and asked[0] == IDLE:
                        self._answered(bool(asked[1]))
                    elif asked == METRICS:
                        # on the next turn of the loop: an outcome whose commit has
                        # returned by now is counted first (its task resumes before)
                        loop.call_soon(metrics)
                    elif asked == QUIT:
                        stop_now()
                    else:
                        stop()
            except (EOFError, OSError):
                self.gone = True
                loop.remove_reader(fd)
                while self._answers:
                    self._answered(False)
                for result in self._calls.values():
                    if not result.done():
                        result.set_exception(ParentGone())
                self._calls.clear()
                stop()

        loop.add_reader(fd, readable)


class ParentGone(Exception):
    """The parent process went away: the child is stopping."""


class ParentLanes:
    """The shaping lanes (shaping.py ``Lanes``) a child's shaper shares with every
    process of its command, held by their parent: one adapted rate and one schedule of
    rate slots per provider, as ``RedisLanes`` shares them between machines. Once the
    parent is gone (the child is stopping), lanes of the child's own."""

    def __init__(self, link: ParentLink) -> None:
        self.link = link
        self._own = LocalLanes()

    async def get(self, names: Iterable[str]) -> dict[str, Adapted]:
        names = list(names)
        try:
            found: dict[str, Adapted] = await self.link.call("get", names)
        except ParentGone:
            return await self._own.get(names)
        return found

    async def update(self, provider: Provider, change: Callable[[Adapted], Adapted]) -> Adapted:
        try:  # ``change`` is a partial of adaptive.py's functions: it pickles
            state: Adapted = await self.link.call("update", provider, change)
        except ParentGone:
            return await self._own.update(provider, change)
        return state

    async def reserve(self, name: str, rate: float, horizon: float) -> float:
        try:
            wait: float = await self.link.call("reserve", name, rate, horizon)
        except ParentGone:
            return await self._own.reserve(name, rate, horizon)
        return wait

    async def restart(self, name: str) -> None:
        with contextlib.suppress(ParentGone):
            await self.link.call("restart", name)
        await self._own.restart(name)

    async def close(self) -> None:
        pass
