"""``mailspool status --watch``: plain lines when its output is not a terminal (read from
a subprocess, stopped by SIGINT with exit 0), and the terminal's view of one fixed
reading, rendered to text."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from mailspool.cli.watch import Figures, Rates, Snapshot, plain_line, render
from mailspool.models import State
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.processes import env, mailspool

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def queued(cli: Callable[..., Result], tmp_path: Path, campaign: str, n: int) -> None:
    write_csv(tmp_path / f"{campaign}.csv", [(f"u{i}", f"u{i}@example.com") for i in range(n)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("enqueue", f"{campaign}.csv", "--template", "t.txt", "--campaign", campaign)
    assert res.returncode == 0, res.stderr


class Lines:
    """A subprocess's stdout, line by line, each waited for (the bound only keeps a broken
    run from hanging)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self._lines.put(x) for x in stdout], daemon=True).start()

    def next(self) -> str:
        return self._lines.get(timeout=30)


def test_not_on_a_terminal_it_prints_a_line_per_change_until_sigint(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queued(cli, tmp_path, "spring", 3)
    queued(cli, tmp_path, "autumn", 2)
    proc = subprocess.Popen(
        mailspool("status", "--watch"), cwd=tmp_path, env=env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        lines = Lines(proc)
        first = sorted([lines.next(), lines.next()], key=lambda x: "spring" in x)
        assert "autumn: queued=2  sending=0" in first[0] and "progress=0.0%" in first[0]
        assert "spring: queued=3" in first[1] and "cancelled=0" in first[1]
        assert first[0].startswith("20") and first[0][19] == "Z"  # stamped with the time
        # a change makes a line of the campaign that changed, and only of it
        assert cli("campaign", "cancel", "autumn").returncode == 0
        changed = lines.next()
        assert "autumn [cancelled]: queued=0" in changed and "cancelled=2" in changed
        assert "progress=100.0%" in changed and "eta=0s" in changed
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_json_lines_carry_the_figures(tmp_path: Path, cli: Callable[..., Result]) -> None:
    queued(cli, tmp_path, "spring", 2)
    proc = subprocess.Popen(
        mailspool("status", "--watch", "--json", "--campaign", "spring"), cwd=tmp_path,
        env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        row = json.loads(Lines(proc).next())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert row["campaign"] == "spring" and row["state"] == "active" and row["queued"] == 2
    assert row["progress"] == 0 and row["rate_per_s"] is None and row["eta_s"] is None


def row(campaign: str, state: str, **counts: int) -> dict[str, object]:
    r: dict[str, object] = {"campaign": campaign, "state": state}
    r |= {s.value: counts.get(s.value, 0) for s in State}
    r["total"] = sum(counts.values())
    r["pending"] = sum(counts.get(s, 0) for s in ("queued", "sending", "deferred"))
    return r


SNAPSHOT = Snapshot(
    T0,
    [
        Figures(row("spring", "paused", queued=1200, sending=32, sent=968, dead=0), 812.5, 1.5),
        Figures(row("autumn", "cancelled", sent=40, cancelled=60), None, 0.0),
        Figures(row("welcome", "active", queued=3, sent=1), 2.0, 150.0),
    ],
)


def test_the_terminal_view_of_a_reading() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(render(SNAPSHOT))
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0] == "mailspool status  2027-01-15T08:00:00Z"
    spring, autumn, welcome = lines[1], lines[3], lines[5]
    assert spring.startswith("spring") and "[paused]" in spring
    assert "44%" in spring and "812.5/s" in spring and "ETA 2s" in spring
    assert "[cancelled]" in autumn and "100%" in autumn and "ETA 0s" in autumn
    assert "[" not in welcome and "25%" in welcome and "2.0/s" in welcome
    assert "ETA 2m30s" in welcome
    # the columns line up from one campaign to the next
    assert spring.index("%") == autumn.index("%") == welcome.index("%")
    assert lines[2].split() == [
        "queued=1200", "sending=32", "deferred=0", "sent=968", "dead=0", "suppressed=0",
        "cancelled=0",
    ]  # fmt: skip
    assert "cancelled=60" in lines[4]
    assert all(len(line) <= 80 for line in lines)


def test_an_empty_queue_says_so() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(render(Snapshot(T0, [])))
    assert "no campaigns in this queue" in console.export_text()


def test_a_plain_line() -> None:
    line = plain_line(SNAPSHOT.figures[0], T0)
    assert line.startswith("2027-01-15T08:00:00Z spring [paused]: queued=1200  sending=32")
    assert line.endswith("progress=44.0%  rate=812.5/s  eta=2s")


def test_the_rate_is_taken_over_the_readings_of_the_last_minute() -> None:
    rates = Rates()
    first = rates.figures(row("c", "active", queued=100), T0)
    assert first.rate is None and first.eta is None  # one reading: no rate yet
    later = rates.figures(row("c", "active", queued=60, sent=30, dead=10), T0 + 4)
    assert later.rate == 10.0 and later.eta == 6.0
    done = rates.figures(row("c", "active", sent=90, dead=10), T0 + 100)
    assert done.eta == 0.0  # the first readings fell out of the window; nothing pending
