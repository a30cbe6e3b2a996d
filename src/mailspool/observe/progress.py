"""Progress: a rich bar with rate and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from mailspool.delivery.observer import Observer
from mailspool.models import Outcome, State


class Progress(Observer):
    """Messages done (sent or dead) out of ``total`` for the run called ``label``: a
    progress bar on a terminal (between :meth:`start` and :meth:`stop`), else a line on
    stderr every ``interval`` seconds; nothing at all unless ``enabled``."""

    def __init__(self, label: str, interval: float = 5.0, enabled: bool = True) -> None:
        self.label = label
        self.done = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self._interval = interval
        self._last = self.started
        self._bar: Any = None
        self._task: Any = None
        self._enabled = enabled
        self._tty = enabled and sys.stderr.isatty()

    def start(self) -> None:
        if not self._tty:
            return
        from rich.progress import (  # imported lazily: only terminals need it
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]:>8.0f} msg/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._bar.add_task(self.label, total=None, rate=0.0)
        self._bar.start()

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    @property
    def rate(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.started)

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        self.done += sum(1 for o in outcomes if o.state is not State.DEFERRED)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self.rate)
            return
        now = time.monotonic()
        if self._enabled and now - self._last >= self._interval:
            self._last = now
            total = f"/{self.total}" if self.total is not None else ""
            print(f"{self.label}: {self.done}{total} done, {self.rate:.0f} msg/s", file=sys.stderr)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self.rate)
            self._bar.stop()
            self._bar = None
