"""The supervisor of delivery child processes (delivery/supervisor.py) with scripted
children that speak the pipe protocol (delivery/reporting.py) and send no mail: what a
child reports reaches the parent's observers, a child that dies has its leases handed
back at once and is started again, one that ends cleanly is not, and the run's end is
asked of the parent."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from mailspool.delivery.adaptive import cut
from mailspool.delivery.observer import Counter, Observer
from mailspool.delivery.providers import Provider, Throttle
from mailspool.delivery.reporting import (
    IDLE,
    PAUSED,
    RECORDED,
    ParentLanes,
    ParentLink,
    error_fields,
    outcomes,
    rebuild_error,
)
from mailspool.delivery.shaping import LocalLanes
from mailspool.delivery.supervisor import Supervisor
from mailspool.errors import AuthFailure, DeliveryError, Stage
from mailspool.models import State

OWNER = "host:123:token:space"


class Leases:
    """A LeaseAdmin that records whose leases were handed back."""

    def __init__(self) -> None:
        self.released: list[str] = []

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        return []

    async def release_owner(self, owner: str) -> int:
        self.released.append(owner)
        return 2


def dies_once(marker: str, conn: Connection) -> None:
    """A child that says hello, records a sent message and a dead one; the first time it
    dies (exit status 3) before it is stopped, the next it waits for its stop."""
    link = ParentLink(conn)
    link.hello(OWNER)
    link.send((RECORDED, [(State.SENT.value, False), (State.DEAD.value, True)]))
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(3)
    conn.recv()  # "stop"


def asks_whether_idle(_: object, conn: Connection) -> None:
    """A child with nothing to claim: it asks whether the run is over, and ends when so."""
    link = ParentLink(conn)
    link.hello(OWNER)
    link.send((PAUSED, error_fields(AuthFailure("auth", code=535, stage=Stage.AUTH)), 5.0))
    while True:
        link.send((IDLE,))
        answer = conn.recv()
        if answer == (IDLE, True):
            return


GOOGLE = Provider("google", ("gmail.com",), throttle=(Throttle.parse("421 4.7.0"),))


def shapes_through_its_parent(out: str, conn: Connection) -> None:
    """A child whose shaper would use the lanes its parent holds: rate slots at one per
    10 s (the first within a 1 s horizon, then within 100 s), then a cut after a
    throttling reply; what it saw goes to the file ``out``."""

    async def use() -> dict[str, object]:
        link = ParentLink(conn)
        link.listen(stop=lambda: None, stop_now=lambda: None)
        lanes = ParentLanes(link)
        waits = [await lanes.reserve("google", 0.1, horizon) for horizon in (1.0, 100, 100)]
        change = functools.partial(
            cut, provider=GOOGLE, now=1000.0, sent_at=999.0, seen=8.0,
            throttle=GOOGLE.throttle[0], reply="421 4.7.0 slow down",
        )  # fmt: skip
        state = await lanes.update(GOOGLE, change)
        return {"waits": waits, "rate": state.rate}

    Path(out).write_text(json.dumps(asyncio.run(use())))


class Paused(Observer):
    def __init__(self) -> None:
        self.errors: list[DeliveryError] = []

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        self.errors.append(err)


async def until(check: Callable[[], bool]) -> None:
    while not check():  # noqa: ASYNC110 - the supervisor sets no event a test could wait on
        await asyncio.sleep(0.02)


async def test_a_child_that_dies_is_started_again_with_its_leases_handed_back(
    tmp_path: Path,
) -> None:
    leases, counter = Leases(), Counter()
    supervisor = Supervisor(
        target=dies_once,
        spec=str(tmp_path / "died"),
        processes=1,
        leases=leases,
        observers=[counter],
    )
    await supervisor.start()
    # the first run's report, then the second's: the parent counted both
    await until(lambda: counter.sent_count == 2)
    assert leases.released == [OWNER]  # at once, when it died
    assert (counter.dead_count, counter.ambiguous) == (2, 2)
    assert supervisor.running
    supervisor.stop()
    await supervisor.wait()
    assert not supervisor.running and supervisor.gave_up == 0
    assert leases.released == [OWNER, OWNER]  # whatever it held, also after a clean end


async def test_children_ask_the_parent_whether_the_run_is_over() -> None:
    leases, paused = Leases(), Paused()
    supervisor = Supervisor(
        target=asks_whether_idle, spec=None, processes=2, leases=leases, observers=[paused]
    )
    asked = []

    async def idle() -> bool:
        asked.append(True)
        return len(asked) > 3

    supervisor.idle = idle
    await supervisor.start()
    await supervisor.wait()  # both ended by themselves, with status 0: not started again
    assert len(asked) >= 4 and leases.released == [OWNER, OWNER]
    # their relay pauses reached the parent's observers, as the errors they were
    assert [type(e) for e in paused.errors] == [AuthFailure, AuthFailure]
    assert paused.errors[0].code == 535 and paused.errors[0].stage is Stage.AUTH


def test_what_the_pipe_carries_is_rebuilt_as_it_was() -> None:
    err = AuthFailure("5.7.8 bad credentials", code=535, enhanced="5.7.8", stage=Stage.AUTH)
    again = rebuild_error(error_fields(err))
    assert type(again) is AuthFailure and again.reply == err.reply and again.stage is Stage.AUTH
    [sent, dead] = outcomes([("sent", False), ("dead", True)])
    assert (sent.state, sent.ambiguous, dead.state, dead.ambiguous) == (
        State.SENT, False, State.DEAD, True,
    )  # fmt: skip


async def test_a_childs_shaper_shares_the_rates_its_parent_holds(tmp_path: Path) -> None:
    held = LocalLanes()
    await held.reserve("google", 0.1, 5.0)  # the parent's own worker took a slot: the next in 10 s
    out = tmp_path / "seen.json"
    supervisor = Supervisor(
        target=shapes_through_its_parent, spec=str(out), processes=1, leases=Leases(),
        lanes=held,
    )  # fmt: skip
    await supervisor.start()
    await supervisor.wait()
    seen = json.loads(out.read_text())
    # one schedule: the child's next slot is the one after the parent's, 10 s after it,
    # so it is not taken within a horizon of 1 s; the next two are 10 s apart
    beyond, first, second = seen["waits"]
    assert beyond < 0 and first > 0 and abs(second - first - 10) < 1
    # the cut a child made is the parent's: every process now sends at it
    assert seen["rate"] == 4.0
    assert (await held.get(["google"]))["google"].rate == 4.0
