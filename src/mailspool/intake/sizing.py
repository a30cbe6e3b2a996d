"""How many render processes (pool.py) a source is built with: none for a small one,
where starting them costs more than they save. Apart from pool.py so that a command
with a small source (most sends) does not import the pool."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_PROCESSES", "MIN_SOURCE_BYTES", "default_processes"]

#: below this size a source is built in this process
MIN_SOURCE_BYTES = 256 * 1024
MAX_PROCESSES = 4


def default_processes(source: Path, *, delivering: bool) -> int:
    """How many children to build with: none for a small source; else one per core
    (less one when this process also delivers), at most MAX_PROCESSES."""
    try:
        if source.stat().st_size < MIN_SOURCE_BYTES:
            return 0
    except OSError:
        return 0
    cpus = os.cpu_count() or 1
    if cpus < 2:
        return 0
    return max(1, min(MAX_PROCESSES, cpus - 1 if delivering else cpus))
