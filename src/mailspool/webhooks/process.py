"""The dispatcher in a child process of its own, for a command whose queue another
process can open (every queue but ``memory://``).

Why a process: a webhook request costs about as much CPU as a tenth to a third of a
delivered message (an HTTP exchange and a signature per event); on the delivery's own
event loop that comes off the delivery rate, while a child process runs it on another
core. The child opens the same queue, runs a :class:`Dispatcher` until told to stop,
and stops by itself when its parent goes away (its end of the pipe closes). The parent
asks it to ``hurry`` before a drain and watches the backlog in the job store itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from mailspool.children import start_child
from mailspool.queue import make_queue
from mailspool.webhooks.dispatcher import Dispatcher, DispatchSettings
from mailspool.webhooks.endpoints import parse_webhooks
from mailspool.webhooks.signing import WebhookSecrets

__all__ = ["ChildSpec", "DispatcherProcess"]

#: how much lower the child's CPU priority is than its parent's
NICENESS = 10
#: how long a child may take to start (imports, opening the queue) and to stop
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What the child needs: the queue (and store) URLs, the ``--webhook`` values, the
    delivery settings, and how to set up its logs (a picklable callable, or None)."""

    queue: str
    store: str | None
    webhooks: tuple[str, ...]
    settings: DispatchSettings
    setup: Callable[[], None] | None = None


def child_main(spec: ChildSpec, conn: Connection) -> None:
    """The child's entry point (spawned): deliver until the parent says stop or goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    if spec.setup is not None:
        spec.setup()
    # mail delivery first: on a busy machine the events wait (durably) rather than the mail
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    try:
        import uvloop  # as the commands run: its sockets cost less per request
    except ImportError:
        asyncio.run(_deliver(spec, conn))
    else:
        uvloop.run(_deliver(spec, conn))


async def _deliver(spec: ChildSpec, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with make_queue(spec.queue, spec.store) as queue:
        dispatcher = Dispatcher(
            queue.events,
            parse_webhooks(spec.webhooks),
            WebhookSecrets.from_environment(),
            spec.settings,
        )
        await dispatcher.start()

        def readable() -> None:
            try:
                while conn.poll():
                    if conn.recv() == "hurry":
                        dispatcher.hurry()
                    else:
                        stop.set()
            except (EOFError, OSError):  # the parent is gone
                stop.set()
                loop.remove_reader(conn.fileno())

        loop.add_reader(conn.fileno(), readable)
        conn.send("ready")
        await dispatcher.run(stop)


class DispatcherProcess:
    """The parent's handle on the child: ``start``, ``hurry``, ``stop``."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=child_main, args=(spec, child), name="mailspool-webhooks", daemon=True
        )
        self._child_end = child
        self._ready = False

    async def start(self) -> None:
        """Start the child; not waited for (its start-up overlaps mail delivery, and
        events wait for it durably): :meth:`ready` says whether it came up."""
        start_child(self._proc)  # deaf to Ctrl-C from its first instruction
        self._child_end.close()

    async def ready(self) -> bool:
        """Whether the child has started (waiting up to :data:`START_TIMEOUT`)."""
        if self._ready:
            return True
        got = await asyncio.to_thread(self._conn.poll, START_TIMEOUT)
        self._ready = got and self._safe_recv() == "ready"
        return self._ready

    def _safe_recv(self) -> object:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            return None

    def hurry(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("hurry")

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    async def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        await asyncio.to_thread(self._proc.join, STOP_TIMEOUT)
        if self._proc.is_alive():
            self._proc.terminate()
            await asyncio.to_thread(self._proc.join, 5)
        self._conn.close()
