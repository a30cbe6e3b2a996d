"""Lease owners: who holds a job, and whether that process is known to be dead; and the
heartbeat that keeps a worker's leases.

An owner names its process as host:pid:token:pid-space, so that a later process on the
same host (a re-run after SIGKILL) can hand back a dead process's leases at once instead
of waiting for them to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from pathlib import Path

from mailspool.errors import QueueError
from mailspool.queue import Claiming, LeaseAdmin


def _pid_space() -> str:
    """Which process-id space this process lives in: the boot and the PID namespace.

    Containers may share a host name while each has its own PIDs; a pid that does not
    exist here says nothing about a process in another namespace (nor before a reboot)."""
    parts = []
    for read, path in (
        (Path.read_text, "/proc/sys/kernel/random/boot_id"),
        (os.readlink, "/proc/self/ns/pid"),
    ):
        try:
            parts.append(str(read(Path(path))).strip())
        except OSError:
            parts.append("?")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]


PID_SPACE = _pid_space()
WORKER_TOKEN = uuid.uuid4().hex[:8]


def make_owner() -> str:
    """host:pid:token:pid-space - lets a later process in the same PID space reclaim the
    leases of one that died."""
    return f"{socket.gethostname()}:{os.getpid()}:{WORKER_TOKEN}:{PID_SPACE}"


def owner_is_dead_here(owner: str) -> bool:
    """True when ``owner`` was a process of this host and PID space that no longer exists."""
    fields = owner.split(":")
    if len(fields) != 4 or fields[0] != socket.gethostname() or fields[3] != PID_SPACE:
        return False
    pid_text, token = fields[1], fields[2]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != WORKER_TOKEN  # same pid, earlier process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def reclaim_dead_leases(queue: LeaseAdmin, campaign: str | None = None) -> int:
    """Hand back at once the leases of processes on this host that no longer exist (a
    SIGKILLed run), instead of waiting for their leases to expire."""
    reclaimed = 0
    for owner in await queue.lease_owners(campaign):
        if owner_is_dead_here(owner):
            reclaimed += await queue.release_owner(owner)
    return reclaimed


async def heartbeat(queue: Claiming, owner: str, held: set[str], lease: float) -> None:
    """Extend the lease of every job in ``held`` (the worker's set, which changes as it
    works) every third of a lease, at least every half second, until cancelled; an
    extension that fails is tried again at the next beat."""
    interval = max(0.5, lease / 3)
    while True:
        await asyncio.sleep(interval)
        if held:
            with contextlib.suppress(QueueError):
                await queue.extend(owner, list(held), lease)
