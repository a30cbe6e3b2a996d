#!/usr/bin/env python3
"""Start-up CPU: what ``mailspool --help`` costs, and what ``mailspool send`` has spent
when it reaches its first row (bench/README.md). Targets: 0.1 s and 0.15 s of CPU.

For --runs rounds:

  (a) mailspool --help: the child's user + system CPU (wait4);
  (b) for each of --rows (default 1 and 10000):
        mailspool send recipients.csv --template t.txt --smtp smtp://127.0.0.1:PORT
          --queue sqlite:///<tmp>/queue.db --json
      (the default log level: info, JSON lines on stderr; --json only for the summary it
      checks) against Postfix smtp-sink, stopped at its first row without touching its code:
      this process holds a Linux file lease (F_SETLEASE, F_WRLCK) on the CSV, so the
      first open() of the file, by the source reading its rows, blocks in the kernel and
      signals us. The CPU spent until then is read from the child's CPU clock (all its
      threads) plus that of its child processes, once the sum stops growing (children
      started before the first row, such as render processes, count too); then the lease
      is released, send goes on, and must report every row sent.

Nothing else opens the CSV before its rows are read (the campaign name hashes its path,
the render pool looks at its size), which the first open being the source's relies on.
The children compile no bytecode while measured: the bytecode goes to a cache in the
temp dir (PYTHONPYCACHEPREFIX) filled by a first, unmeasured round.

  python bench/bench_start.py                  # 5 rounds; 1 and 10000 rows
  python bench/bench_start.py --importtime     # also: the imports before the first row
  python bench/bench_start.py --rows 1 --runs 3
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from _common import (
    child_env,
    exit_on_sigterm,
    find_mailspool,
    run_child,
    write_csv,
    write_template,
)
from bench_send import SMTP_SINK, Sink

TARGET_HELP_S = 0.10
TARGET_FIRST_ROW_S = 0.15
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_S = 0.05  # the CPU of the process tree is read again after this long...
SETTLED_S = 0.0005  # ...until it grew by less than this


def cpu_clock(pid: int) -> float:
    """The CPU time of every thread of process ``pid``, live or ended, in seconds, from its
    CPU clock (Linux: clock id ``(~pid << 3) | 2``, nanoseconds, where /proc counts ticks of
    10 ms); NaN once it is gone."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except OSError:
        return float("nan")


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (of any of its threads)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            found += map(int, Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except OSError:
            continue
    return found


def reaped_cpu(pid: int) -> float:
    """The CPU of ``pid``'s children that ended and were waited for (cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its ended children and, recursively, its live ones."""
    total = cpu_clock(pid) + reaped_cpu(pid)
    return total + sum(tree_cpu(c) for c in child_pids(pid))


class FirstOpen:
    """A write lease on ``path``: the first other process to open the file blocks in
    open() until :meth:`release`, and the kernel tells us with SIGIO. Only one process
    may hold the file open to take the lease (this one)."""

    def __init__(self, path: Path) -> None:
        self.opened = False
        self._previous = signal.signal(signal.SIGIO, self._on_signal)
        self._fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as exc:
            self.release()
            raise SystemExit(
                f"cannot take a lease on {path} ({exc.strerror}): this benchmark needs Linux"
                " file leases (fs.leases-enable = 1, a local file system; --dir elsewhere)"
            ) from None

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.opened = True

    def wait(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        """True once a process is blocked opening the file; False if ``proc`` ended first
        or ``timeout`` passed."""
        t_end = time.monotonic() + timeout
        while not self.opened and proc.poll() is None and time.monotonic() < t_end:
            time.sleep(0.001)
        return self.opened

    def release(self) -> None:
        """Let the opener go on (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)  # removes the lease
            self._fd = -1
            signal.signal(signal.SIGIO, self._previous)


@dataclass
class SendResult:
    rows: int
    round: int
    ok: bool
    first_row_cpu_s: float = float("nan")
    first_row_wall_s: float = float("nan")
    #: the part of first_row_cpu_s spent by child processes
    first_row_children_cpu_s: float = 0.0
    total_cpu_s: float = float("nan")
    wall_s: float = float("nan")
    error: str = ""
    imports: str = ""  # -X importtime's lines written before the first row


def settled_cpu(pid: int, timeout: float) -> float:
    """The process tree's CPU once it stops growing (it is blocked at the first row, and
    its children, if any, have nothing left to do)."""
    last = tree_cpu(pid)
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        time.sleep(SETTLE_S)
        now = tree_cpu(pid)
        if now - last < SETTLED_S:
            return now
        last = now
    return last


def run_send(
    rows: int, rnd: int, sink: Sink, args: argparse.Namespace, *, importtime: bool
) -> SendResult:
    """One ``mailspool send`` of the ``rows``-row CSV, held at its first row."""
    tmp: Path = args.tmp
    csv = tmp / f"recipients-{rows}.csv"
    queue = tmp / "queue.db"
    cmd = [
        args.mailspool, "send", str(csv), "--template", str(tmp / "t.txt"),
        "--smtp", f"smtp://127.0.0.1:{sink.port}", "--queue", f"sqlite:///{queue}",
        "--json",
    ]  # fmt: skip
    env = args.env | ({"PYTHONPROFILEIMPORTTIME": "1"} if importtime else {})
    result = SendResult(rows=rows, round=rnd, ok=False)
    out_path, err_path = tmp / ".send.out", tmp / ".send.err"
    lease = FirstOpen(csv)
    try:
        with out_path.open("wb") as out, err_path.open("wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=err, env=env)
            try:
                if lease.wait(proc, args.timeout):
                    result.first_row_wall_s = time.perf_counter() - t0
                    result.first_row_cpu_s = settled_cpu(proc.pid, args.timeout)
                    own = cpu_clock(proc.pid)
                    result.first_row_children_cpu_s = max(0.0, result.first_row_cpu_s - own)
                    err.flush()
                    result.imports = err_path.read_text(errors="replace") if importtime else ""
                else:
                    result.error = "ended before reading its rows"
                lease.release()
                _, status, usage = wait4(proc, args.timeout)
            except BaseException:  # Ctrl-C, SIGTERM, a timeout: leave no child behind
                proc.kill()
                proc.wait()
                raise
            result.wall_s = time.perf_counter() - t0
            result.total_cpu_s = usage.ru_utime + usage.ru_stime
    finally:
        lease.release()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{queue}{suffix}").unlink(missing_ok=True)
    rc = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    summary = _last_json(out_path.read_text(errors="replace"))
    if rc != 0:
        result.error = f"exit {rc}: {stderr.strip()[-300:]}"
    elif summary is None or summary.get("sent") != rows:
        got = "no JSON summary" if summary is None else f"sent={summary.get('sent')}"
        result.error = f"expected sent={rows}, {got}: {stderr.strip()[-300:]}"
    result.ok = not result.error
    return result


def wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, Any]:
    """os.wait4 of ``proc`` (its own resource usage), killing it after ``timeout``."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        time.sleep(0.01)
    raise TimeoutError(f"mailspool send still running after {timeout:.0f}s")


def _last_json(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def help_cpu(args: argparse.Namespace) -> float:
    res = run_child([args.mailspool, "--help"], cwd=args.tmp, timeout=args.timeout, env=args.env)
    if res.rc != 0:
        raise SystemExit(f"mailspool --help failed (exit {res.rc}): {res.stderr[-300:]}")
    return res.cpu


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def top_imports(text: str, count: int) -> list[tuple[int, int, str]]:
    """The ``count`` imports of -X importtime output with the most cumulative time:
    (cumulative µs, self µs, module), the module indented by its depth."""
    found = []
    for m in _IMPORT_LINE.finditer(text):
        self_us, cumulative, indent, name = int(m[1]), int(m[2]), m[3], m[4]
        found.append((cumulative, self_us, " " * (len(indent) - 1) + name))
    return sorted(found, reverse=True)[:count]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(args: argparse.Namespace, helps: list[float], sends: list[SendResult]) -> dict[str, Any]:
    print(
        f"\n{args.runs} rounds, {os.cpu_count()} CPUs (load average {args.load_before:.2f}"
        " before the benchmark). CPU = user + system seconds, median (min-max).\n"
    )
    print("| what | CPU s | target s | of target | wall s | failed runs |")
    print("|---|---:|---:|---:|---:|---:|")
    out: dict[str, Any] = {"help_cpu_s": helps, "target_help_s": TARGET_HELP_S}
    h = statistics.median(helps)
    print(f"| `mailspool --help` | {spread(helps)} | {TARGET_HELP_S} | **{h / TARGET_HELP_S:.2f}**"
          " | | 0 |")  # fmt: skip
    out["help_of_target"] = h / TARGET_HELP_S
    met = h <= TARGET_HELP_S
    for rows in args.rows:
        what = "1 row" if rows == 1 else f"{rows} rows"
        runs = [r for r in sends if r.rows == rows]
        ok = [r for r in runs if r.ok]
        failed = len(runs) - len(ok)
        if not ok:
            print(f"| `send`, {what}: to the first row | - | {TARGET_FIRST_ROW_S} | - | - |"
                  f" {failed} |")  # fmt: skip
            met = False
            continue
        first = statistics.median(r.first_row_cpu_s for r in ok)
        kids = statistics.median(r.first_row_children_cpu_s for r in ok)
        of = first / TARGET_FIRST_ROW_S
        wall = statistics.median(r.first_row_wall_s for r in ok)
        print(f"| `send`, {what}: to the first row | {spread([r.first_row_cpu_s for r in ok])}"
              f" | {TARGET_FIRST_ROW_S} | **{of:.2f}** | {wall:.3f} | {failed} |")  # fmt: skip
        if kids:
            print(f"| of which its child processes | {kids:.3f} | | | | |")
        total = [r.total_cpu_s for r in ok]
        print(f"| `send`, {what}: the whole run | {spread(total)} | | |"
              f" {statistics.median(r.wall_s for r in ok):.3f} | |")  # fmt: skip
        met = met and of <= 1 and not failed
        out[f"send_{rows}"] = {"first_row_cpu_s": first, "of_target": of, "children_cpu_s": kids}
    verdict = "met" if met else "NOT met"
    print(
        f"\nTargets (--help <= {TARGET_HELP_S} s, first row <= {TARGET_FIRST_ROW_S} s): {verdict}"
    )
    if args.load_before > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {args.load_before:.2f} before the start: others' work"
              " slows the CPU down too (caches, frequency); rerun on an idle machine.")  # fmt: skip
    return out | {"targets_met": met}


def print_imports(sends: list[SendResult], count: int) -> None:
    for r in sends:
        if not r.imports:
            continue
        print(f"\nImports before the first row, {r.rows} rows (-X importtime; µs, the most"
              " cumulative first):\n")  # fmt: skip
        print("| cumulative µs | self µs | module |\n|---:|---:|---|")
        for cumulative, self_us, name in top_imports(r.imports, count):
            print(f"| {cumulative} | {self_us} | `{name}` |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    ap.add_argument(
        "--rows", type=int, nargs="+", default=[1, 10_000], metavar="N",
        help="send a CSV of N rows, for each N (default 1 10000: 10000 rows are over the"
        " size at which send starts render processes)",
    )  # fmt: skip
    ap.add_argument(
        "--importtime", nargs="?", const=30, type=int, metavar="K",
        help="one more run of each send under -X importtime (not measured): print its K"
        " imports before the first row with the most cumulative time (default 30)",
    )  # fmt: skip
    ap.add_argument("--mailspool", help="mailspool executable (default: beside this Python)")
    ap.add_argument("--dir", type=Path, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--timeout", type=float, default=120, help="per run, seconds (120)")
    ap.add_argument("--json", type=Path, help="write raw results to this file")
    ap.add_argument("--check", action="store_true", help="exit 3 when a target is missed")
    args = ap.parse_args(argv)
    if args.runs < 1 or any(n < 1 for n in args.rows):
        ap.error("--runs and --rows must be positive")
    if not os.access(SMTP_SINK, os.X_OK):
        ap.error(f"{SMTP_SINK} not found: install Postfix (see bench/README.md)")
    args.mailspool = find_mailspool(args.mailspool)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]
    exit_on_sigterm()
    helps: list[float] = []
    sends: list[SendResult] = []
    traced: list[SendResult] = []
    with tempfile.TemporaryDirectory(prefix="mailspool-bench-", dir=args.dir) as tmp:
        args.tmp = Path(tmp)
        # bytecode cached, as an installed package has it, but not written elsewhere
        env = {k: v for k, v in child_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        args.env = {**env, "PYTHONPYCACHEPREFIX": str(args.tmp / "pycache")}
        for rows in args.rows:
            write_csv(args.tmp / f"recipients-{rows}.csv", rows)
        write_template(args.tmp / "t.txt")
        sink = Sink(args.tmp / "smtp-sink.log")
        try:
            print(f"# sink={shlex.join(sink.cmd)} mailspool={args.mailspool}", file=sys.stderr)
            help_cpu(args)  # the first round fills the bytecode cache: not measured
            for rows in args.rows:
                warm = run_send(rows, 0, sink, args, importtime=False)
                if not warm.ok:
                    raise SystemExit(f"mailspool send failed: {warm.error}")
            for rnd in range(1, args.runs + 1):
                helps.append(help_cpu(args))
                line = f"[round {rnd}] --help {helps[-1]:.3f}s"
                for rows in args.rows:
                    sends.append(run_send(rows, rnd, sink, args, importtime=False))
                    r = sends[-1]
                    line += f"  send {rows} rows: first row {r.first_row_cpu_s:.3f}s"
                    line += f" (whole run {r.total_cpu_s:.3f}s)" if r.ok else f" FAILED: {r.error}"
                print(line, file=sys.stderr, flush=True)
            if args.importtime:
                traced = [run_send(n, 0, sink, args, importtime=True) for n in args.rows]
        finally:
            sink.stop()
    summary = report(args, helps, sends)
    if args.importtime:
        print_imports(traced, args.importtime)
    if args.json:
        raw = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                     if k != "env"},
            "sends": [asdict(r) | {"imports": None} for r in sends],
            **summary,
        }  # fmt: skip
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if not all(r.ok for r in sends):
        return 1
    return 3 if args.check and not summary["targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
