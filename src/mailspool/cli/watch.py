"""``mailspool status --watch``: the figures of ``status``, read again every second until
Ctrl-C (or SIGTERM), then exit 0. Each campaign's counts by state, cancelled included,
its state when paused or cancelled, its progress (final jobs out of all), its send rate
(sent and dead jobs a second over the last minute of readings, as the HTTP API counts
it) and the time left at that rate.

On a terminal: a table, redrawn in place (rich's Live). Otherwise (a pipe, a log file):
a plain line per campaign whose figures changed since the last reading, stamped with the
time, or with ``--json`` one JSON object per line, so that the output reads well in a
log and can be piped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mailspool.cli.exits import ExitCode
from mailspool.cli.figures import campaign_rows, counts_line, iso
from mailspool.queue import Queue

#: seconds between two readings
INTERVAL = 1.0
#: the readings a rate is taken over (seconds)
RATE_WINDOW = 60.0
#: the columns of counts, in the order of status's line
COUNTS = ("queued", "sending", "deferred", "sent", "dead", "suppressed", "cancelled")
#: the widest a campaign's name is shown, and the progress bar's width (80 columns in all)
NAME_WIDTH, BAR_WIDTH = 24, 16
#: how a state that is not active is marked beside the campaign's name
STYLES = {"paused": "bold yellow", "cancelled": "bold red"}


@dataclass(frozen=True, slots=True)
class Figures:
    """One campaign at one reading: its row (as ``status --json`` gives it), its send
    rate (jobs a second; None before a second reading) and the seconds left at that
    rate (0 when nothing is pending, None without a rate)."""

    row: dict[str, Any]
    rate: float | None = None
    eta: float | None = None

    @property
    def done(self) -> int:
        """Its final jobs: sent, dead, suppressed or cancelled."""
        return int(self.row["total"]) - int(self.row["pending"])

    @property
    def progress(self) -> float:
        """Its final jobs out of all, 0 to 1."""
        total = int(self.row["total"])
        return self.done / total if total else 1.0

    def fields(self) -> dict[str, Any]:
        """The row with progress, rate and ETA (a JSON line)."""
        rate = None if self.rate is None else round(self.rate, 2)
        eta = None if self.eta is None else round(self.eta, 1)
        return self.row | {"progress": round(self.progress, 4), "rate_per_s": rate, "eta_s": eta}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every campaign's figures at one reading, ``at`` (a time.time())."""

    at: float
    figures: list[Figures]


@dataclass(slots=True)
class Rates:
    """Each campaign's recent readings of its sent and dead jobs, for its rate."""

    window: float = RATE_WINDOW
    _seen: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def figures(self, row: dict[str, Any], at: float) -> Figures:
        done = int(row["sent"]) + int(row["dead"])
        seen = self._seen.setdefault(row["campaign"], deque())
        seen.append((at, done))
        while seen and seen[0][0] < at - self.window:
            seen.popleft()
        rate: float | None = None
        first_at, first_done = seen[0]
        if at - first_at >= 1.0:
            rate = (done - first_done) / (at - first_at)
        pending = int(row["pending"])
        eta = 0.0 if pending == 0 else (pending / rate if rate else None)
        return Figures(row, rate, eta)


async def snapshot(queue: Queue, campaign: str | None, rates: Rates) -> Snapshot:
    """Read every campaign's figures now (or ``campaign``'s alone)."""
    campaigns = [campaign] if campaign else await queue.campaigns()
    at = time.time()
    rows = await campaign_rows(queue, campaigns)
    return Snapshot(at, [rates.figures(r, at) for r in rows])


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m20s``, ``12s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}/s"


def render(snap: Snapshot) -> RenderableType:
    """What a terminal shows for one reading: a heading, then two lines per campaign:
    its name (and state when not active), progress bar, rate and ETA, aligned from one
    campaign to the next; its counts by state."""
    parts: list[RenderableType] = [Text(f"mailspool status  {iso(snap.at)}", style="bold")]
    if not snap.figures:
        parts.append(Text("no campaigns in this queue"))
    width = min(NAME_WIDTH, max((len(f.row["campaign"]) for f in snap.figures), default=0))
    marked = any(f.row["state"] in STYLES for f in snap.figures)
    for f in snap.figures:
        head = Table.grid(padding=(0, 1))
        head.add_column(width=width, no_wrap=True, overflow="ellipsis")
        head.add_column(width=len("[cancelled]") if marked else 0)
        head.add_column(width=BAR_WIDTH)
        head.add_column(width=5, justify="right")
        head.add_column(width=10, justify="right")
        head.add_column(no_wrap=True)
        state = f.row["state"]
        head.add_row(
            Text(f.row["campaign"], style="bold"),
            Text(f"[{state}]", style=STYLES[state]) if state in STYLES else "",
            ProgressBar(total=100, completed=f.progress * 100, width=BAR_WIDTH),
            f"{f.progress:.0%}",
            rate_text(f.rate),
            f"ETA {duration(f.eta)}",
        )
        counts = " ".join(f"{c}={f.row[c]}" for c in COUNTS)
        parts += [head, Text(f"  {counts}", style="dim")]
    return Group(*parts)


def plain_line(f: Figures, at: float) -> str:
    """One campaign's figures on one line, stamped with the time of the reading."""
    return (
        f"{iso(at)} {counts_line(f.row)}  progress={f.progress:.1%}"
        f"  rate={rate_text(f.rate)}  eta={duration(f.eta)}"
    )


def _changed(f: Figures) -> tuple[Any, ...]:
    """What, when it changes, makes a new plain line: the state and the counts."""
    return (f.row["state"], *(f.row[name] for name in COUNTS))


async def watch(
    queue: Queue,
    campaign: str | None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    interval: float = INTERVAL,
) -> ExitCode:
    """Show the figures every ``interval`` seconds until SIGINT or SIGTERM; exit 0."""
    out = out or sys.stdout
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signals on this platform
            loop.add_signal_handler(sig, stop.set)
    rates = Rates()
    live = None
    if out.isatty() and not as_json:
        live = Live(console=Console(file=out), auto_refresh=False, transient=False)
        live.start()
    last: dict[str, tuple[Any, ...]] = {}
    try:
        while not stop.is_set():
            snap = await snapshot(queue, campaign, rates)
            if live is not None:
                live.update(render(snap), refresh=True)
            else:
                _print_changes(snap, last, as_json, out)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    except BrokenPipeError:  # the reader went away (| head): nothing more to show
        if out is sys.stdout:  # nor at exit, when Python flushes it
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    finally:
        if live is not None:
            live.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    return ExitCode.OK


def _print_changes(
    snap: Snapshot, last: dict[str, tuple[Any, ...]], as_json: bool, out: TextIO
) -> None:
    for f in snap.figures:
        key = _changed(f)
        if last.get(f.row["campaign"]) == key:
            continue
        last[f.row["campaign"]] = key
        line = json.dumps(f.fields() | {"at": iso(snap.at)}) if as_json else plain_line(f, snap.at)
        print(line, file=out, flush=True)
