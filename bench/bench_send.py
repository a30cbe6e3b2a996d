#!/usr/bin/env python3
"""End-to-end send throughput: ``mailspool send`` against Postfix smtp-sink, as a ratio to
Postfix smtp-source measured against the same sink in the same run (bench/README.md).

Generates a CSV of N recipients and a template rendering a ~2 KB message in a temp dir,
starts one smtp-sink on a free 127.0.0.1 port, then for --runs interleaved rounds:

  (a) smtp-source -d -s 32 -m N -l 2048 ...   (reference client, reused connections)
  (b) mailspool send recipients.csv --template t.txt --smtp smtp://127.0.0.1:PORT
        --concurrency 32 --queue <fresh queue> --json --log-level warning

Both rates are N / process wall clock (mailspool's start-up, CSV parsing, rendering and the
durable queue included). Prints a markdown table and the ratio mailspool / smtp-source.

Examples:
  python bench/bench_send.py                          # N=20000, 3 rounds, SQLite queue
  python bench/bench_send.py -n 2000 --runs 1         # quick smoke
  python bench/bench_send.py --queue-url-template 'redis://127.0.0.1:6379/0'
  python bench/bench_send.py --queue-url-template 'amqp://guest:guest@127.0.0.1:5672/' \
      --store 'postgresql://postgres@127.0.0.1:5432/test'
  python bench/bench_send.py --queue-url-template 'amqp://guest:guest@127.0.0.1:5672/' \
      --store 'redis://127.0.0.1:6379/0'

--queue-url-template placeholders: {tmp} (the temp dir), {run} (round number), {uuid}
(fresh per run). With an sqlite:// queue each run gets a fresh file (deleted after the run);
with any other queue each run uses its own campaign, --campaign bench-<uuid>, and, unless
the URL names its own, a Redis or RabbitMQ prefix and a PostgreSQL schema of its own,
removed after the run (bench/_namespace.py). --with-sqlite also runs the SQLite queue in
every round and prints the other queue's rate as a fraction of it (target 0.8).
--processes N [N ...] runs mailspool once per N in every round, with --processes N (its
delivery processes), and prints each one's rate as a fraction of the first N's; without
it mailspool runs with its default (one delivery process per CPU).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from _common import (
    ChildResult,
    exit_on_sigterm,
    find_mailspool,
    run_child,
    write_csv,
    write_template,
)
from _namespace import namespace

from mailspool.testing.sink import postfix_tool

# found on PATH, in /usr/sbin or at $MAILSPOOL_SMTP_SINK / $MAILSPOOL_SMTP_SOURCE
SMTP_SINK = postfix_tool("smtp-sink") or "smtp-sink"
SMTP_SOURCE = postfix_tool("smtp-source") or "smtp-source"
TARGET_RATIO = 0.25
TARGET_OF_SQLITE = 0.8  # the distributed queues, against the SQLite runs beside them
DEFAULT_QUEUE = "sqlite:///{tmp}/queue-{uuid}.db"
# signs of a busy machine, which make the ratio unreliable
NOISY_SPREAD = 1.25  # max/min of smtp-source's rates across rounds
BUSY_LOAD = 0.5 * (os.cpu_count() or 1)  # 1-minute load average before the start
STARVED_CPU_SHARE = 0.6  # smtp-source uses ~0.9 of a core on an idle machine
CLK_TCK = os.sysconf("SC_CLK_TCK")
LISTEN_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_listen(port: int, timeout: float = LISTEN_TIMEOUT) -> bool:
    """True once an SMTP greeting is read on 127.0.0.1:port."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                if c.recv(512).startswith(b"220"):
                    c.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (NaN if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


class Sink:
    """One Postfix smtp-sink on a free loopback port, stopped by ``stop()``."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        cmd = [SMTP_SINK]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
        cmd += [f"127.0.0.1:{self.port}", "1000"]
        self.cmd = cmd
        self.log_path = log_path
        self._log: TextIO = log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        if not wait_listen(self.port):
            self.stop()
            log = log_path.read_text(errors="replace")[-500:]
            raise SystemExit(f"smtp-sink did not start: {shlex.join(cmd)}\n{log}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class RunResult:
    client: str
    round: int
    cmd: str
    ok: bool
    wall_s: float
    rate: float
    client_cpu_s: float
    sink_cpu_s: float
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


def timed(
    client: str, rnd: int, cmd: list[str], sink: Sink, args: argparse.Namespace
) -> tuple[RunResult, ChildResult]:
    s0 = sink.cpu()
    # child_env: variables a caller adds (bench_webhooks: the signing secret)
    res = run_child(cmd, cwd=args.tmp, timeout=args.timeout, env=getattr(args, "child_env", None))
    sink_cpu = sink.cpu() - s0
    error = ""
    if res.timed_out:
        error = f"killed after {args.timeout:.0f}s"
    elif res.rc != 0:
        error = f"exit {res.rc}: {(res.stderr or res.stdout).strip()[-300:]}"
    run = RunResult(
        client=client,
        round=rnd,
        cmd=shlex.join(cmd),
        ok=not error,
        wall_s=res.wall,
        rate=args.n / res.wall,
        client_cpu_s=res.cpu,
        sink_cpu_s=sink_cpu,
        error=error,
    )
    return run, res


def run_smtp_source(rnd: int, sink: Sink, args: argparse.Namespace) -> RunResult:
    cmd = [
        SMTP_SOURCE, "-d", "-s", str(args.sessions), "-m", str(args.n), "-l", str(args.size),
        "-f", "a@example.com", "-t", "b@example.com", f"127.0.0.1:{sink.port}",
    ]  # fmt: skip
    run, _ = timed(f"smtp-source -d -s {args.sessions}", rnd, cmd, sink, args)
    return run


@dataclass(frozen=True)
class Target:
    """Where a mailspool run keeps its jobs: a queue URL template and a store template."""

    queue: str
    store: str | None = None

    @property
    def kind(self) -> str:
        return self.queue.split(":", 1)[0]

    def urls(self, args: argparse.Namespace, rnd: int, run_id: str) -> tuple[str, str | None]:
        fill = {"tmp": args.tmp, "run": rnd, "uuid": run_id}
        return self.queue.format(**fill), self.store.format(**fill) if self.store else None


def remove_sqlite(url: str) -> None:
    if not url.startswith("sqlite:///"):
        return
    path = url[len("sqlite:///") :]
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)


def run_mailspool(
    rnd: int,
    sink: Sink,
    args: argparse.Namespace,
    target: Target,
    extra: Sequence[str] = (),
    label: str = "",
    processes: int | None = None,
) -> RunResult:
    """One ``mailspool send`` of the recipients; ``extra``: more options (``label`` says
    which, in the client's name); ``processes``: its --processes (None: its default)."""
    run_id = uuid.uuid4().hex[:12]
    ns = namespace(*target.urls(args, rnd, run_id), run_id)
    url = ns.queue
    cmd = [
        args.mailspool, "send", str(args.tmp / "recipients.csv"),
        "--template", str(args.tmp / "t.txt"),
        "--smtp", f"smtp://127.0.0.1:{sink.port}",
        "--concurrency", str(args.concurrency),
        "--queue", url, "--json", "--log-level", "warning", *extra,
    ]  # fmt: skip
    if processes is not None:
        cmd += ["--processes", str(processes)]
        label += f", -p {processes}"
    if not url.startswith("sqlite:"):
        cmd += ["--campaign", f"bench-{run_id}"]
    if ns.store:
        cmd += ["--store", ns.store]
    try:
        client = f"mailspool send -c {args.concurrency} ({target.kind}{label})"
        run, res = timed(client, rnd, cmd, sink, args)
    finally:
        remove_sqlite(url)
        ns.cleanup()
    summary = res.last_json()
    if summary is not None:
        run.summary = summary
    if run.ok and (summary is None or summary.get("sent") != args.n):
        run.ok = False
        got = "no JSON summary" if summary is None else f"sent={summary.get('sent')}"
        run.error = f"expected sent={args.n}, {got}; stderr: {res.stderr.strip()[-300:]}"
    return run


def message_size(args: argparse.Namespace) -> int | None:
    """Bytes of one rendered message (from ``mailspool preview``, CRLF line ends)."""
    cmd = [args.mailspool, "preview", str(args.tmp / "recipients.csv")]
    cmd += ["--template", str(args.tmp / "t.txt"), "--row", "2"]
    res = run_child(cmd, cwd=args.tmp, timeout=60)
    if res.rc != 0:
        return None
    lines = res.stdout.splitlines()
    while lines and lines[0].startswith(("Envelope:", "Attachment:")):
        lines.pop(0)
    return len("\r\n".join(lines).encode()) + 2


def log_run(run: RunResult) -> None:
    cpu = f"client_cpu={run.client_cpu_s:.2f}s sink_cpu={run.sink_cpu_s:.2f}s"
    status = "" if run.ok else f"  FAILED: {run.error}"
    print(
        f"[round {run.round}] {run.client:34s} {run.rate:9.0f} msg/s  wall={run.wall_s:.2f}s"
        f" {cpu}{status}",
        file=sys.stderr,
        flush=True,
    )


def table_row(name: str, runs: list[RunResult], n: int) -> str:
    ok = [r for r in runs if r.ok]
    failed = len(runs) - len(ok)
    if not ok:
        return f"| {name} | - | - | - | - | - | - | - | {failed} |"
    rates = [r.rate for r in ok]
    wall = statistics.median(r.wall_s for r in ok)
    ccpu = statistics.median(100 * r.client_cpu_s / r.wall_s for r in ok)
    scpu = statistics.median(100 * r.sink_cpu_s / r.wall_s for r in ok)
    us_per_msg = statistics.median(1e6 * r.client_cpu_s for r in ok) / n
    return (
        f"| {name} | {min(rates):.0f} | {statistics.median(rates):.0f} | {max(rates):.0f} |"
        f" {wall:.2f} | {ccpu:.0f} | {us_per_msg:.0f} | {scpu:.0f} | {failed} |"
    )


def rate_ratio(
    num: list[RunResult], den: list[RunResult]
) -> tuple[float | None, list[tuple[int, float]]]:
    """The ratio of two clients' median rates (None without a successful run of each),
    and each round's ratio."""
    rounds = [(a.round, a.rate / b.rate) for a, b in zip(num, den, strict=True) if a.ok and b.ok]
    num_ok = [r.rate for r in num if r.ok]
    den_ok = [r.rate for r in den if r.ok]
    if not (num_ok and den_ok):
        return None, rounds
    return statistics.median(num_ok) / statistics.median(den_ok), rounds


def ratios(src: list[RunResult], ms: list[RunResult], load_before: float) -> dict[str, Any]:
    """Print the ratio mailspool / smtp-source: of the median rates (the headline figure),
    the median of the per-round ratios, each round's, and a warning when the reference
    client's own rate moved so much between rounds that the machine was clearly busy."""
    ratio, rounds = rate_ratio(ms, src)
    out: dict[str, Any] = {"target_ratio": TARGET_RATIO, "per_round_ratio": dict(rounds)}
    if ratio is None:
        print("\nRatio: no successful pair of runs")
        return out
    src_ok = [r.rate for r in src if r.ok]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nRatio mailspool / smtp-source (median rates): **{ratio:.3f}**"
        f" (target {TARGET_RATIO}: {verdict})"
    )
    out |= {"median_ratio": ratio, "target_met": ratio >= TARGET_RATIO}
    if rounds:
        per_round = statistics.median(x for _, x in rounds)
        out["median_of_round_ratios"] = per_round
        print(f"Median of the per-round ratios: {per_round:.3f}")
        print("Per round: " + ", ".join(f"round {r}: {x:.3f}" for r, x in rounds))
    spread = max(src_ok) / min(src_ok)
    src_cpu = statistics.median(r.client_cpu_s / r.wall_s for r in src if r.ok)
    out |= {"smtp_source_spread": spread, "smtp_source_cpu_share": src_cpu}
    busy = []
    if load_before > BUSY_LOAD:
        busy.append(f"load average {load_before:.2f} before the start")
    if spread > NOISY_SPREAD:
        busy.append(f"smtp-source's rate varied {100 * (spread - 1):.0f}% between rounds")
    if src_cpu < STARVED_CPU_SHARE:
        busy.append(f"smtp-source got only {100 * src_cpu:.0f}% of a core")
    if busy:
        print(
            f"WARNING: the machine was busy ({'; '.join(busy)}): the ratio is unreliable;"
            " rerun on an idle machine (the CPU µs/msg column is the steadier figure)."
        )
    out["machine_busy"] = bool(busy)
    return out


def versus_sqlite(ms: list[RunResult], lite: list[RunResult]) -> dict[str, Any]:
    """Print the rate of the queue measured as a fraction of the SQLite runs beside it."""
    out: dict[str, Any] = {"target_of_sqlite": TARGET_OF_SQLITE}
    frac, rounds = rate_ratio(ms, lite)
    if frac is None:
        print("Of SQLite: no successful pair of runs")
        return out
    verdict = "met" if frac >= TARGET_OF_SQLITE else "NOT met"
    print(
        f"Of the SQLite runs beside it (median rates): **{frac:.2f}**"
        f" (target {TARGET_OF_SQLITE}: {verdict}); per round: "
        + ", ".join(f"round {r}: {x:.2f}" for r, x in rounds)
    )
    return out | {
        "of_sqlite": frac,
        "of_sqlite_per_round": dict(rounds),
        "of_sqlite_met": frac >= TARGET_OF_SQLITE,
    }


def versus_processes(first: list[RunResult], other: list[RunResult]) -> dict[str, Any]:
    """Print the rate with other --processes as a fraction of the first's, and its ratio
    to smtp-source is printed by the caller."""
    frac, rounds = rate_ratio(other, first)
    if frac is None:
        print(f"{other[0].client}: no successful pair of runs")
        return {}
    print(
        f"{other[0].client} of {first[0].client} (median rates): **{frac:.2f}**; per round: "
        + ", ".join(f"round {r}: {x:.2f}" for r, x in rounds)
    )
    return {"of_first": frac, "of_first_per_round": dict(rounds)}


def report(
    args: argparse.Namespace,
    src: list[RunResult],
    series: list[list[RunResult]],
    size: int | None,
    lite: list[RunResult] | None = None,
) -> dict[str, Any]:
    """The table and the ratios; ``series``: mailspool's runs, one list per --processes
    (the first gives the headline ratio)."""
    ms = series[0]
    queue_kind = args.queue_url_template.split(":", 1)[0]
    size_text = f"~{size} B" if size else "size unknown"
    print(
        f"\nN={args.n} messages/run, {args.runs} interleaved rounds, {os.cpu_count()} CPUs"
        f" (load average {args.load_before:.2f} before the benchmark);"
        f" smtp-source -l {args.size} vs mailspool message {size_text}; queue {queue_kind}."
    )
    print("Rate = N / process wall clock (mailspool: start-up and durable queue included).\n")
    print(
        "| client | msg/s min | msg/s median | msg/s max | wall s (median)"
        " | client CPU % | client CPU µs/msg | sink CPU % | failed runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(table_row(src[0].client, src, args.n))
    if lite:
        print(table_row(lite[0].client, lite, args.n))
    for runs in series:
        print(table_row(runs[0].client, runs, args.n))
    out = ratios(src, ms, args.load_before)
    if lite:
        out |= versus_sqlite(ms, lite)
    others: dict[str, Any] = {}
    for runs in series[1:]:
        ratio, _ = rate_ratio(runs, src)
        if ratio is not None:
            print(f"{runs[0].client} / smtp-source (median rates): {ratio:.3f}")
        others[runs[0].client] = {"ratio": ratio, **versus_processes(ms, runs)}
    if others:
        out["other_processes"] = others
    inproc = [r.summary["rate_per_s"] for r in ms if r.ok and "rate_per_s" in r.summary]
    if inproc:
        print(
            f"mailspool's own rate_per_s (in-process, start-up excluded), median:"
            f" {statistics.median(inproc):.0f} msg/s"
        )
    print("CPU % is of one core; client and sink share the machine's cores.")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=20_000, help="messages per run (default 20000)")
    ap.add_argument("--runs", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--concurrency", type=int, default=32, help="mailspool --concurrency (32)")
    ap.add_argument("--sessions", type=int, default=32, help="smtp-source -s (32)")
    ap.add_argument("--size", type=int, default=2048, help="smtp-source -l and body bytes (2048)")
    ap.add_argument(
        "--queue-url-template",
        default=DEFAULT_QUEUE,
        help="queue URL for each mailspool run; {tmp}, {run}, {uuid} are substituted"
        " (default sqlite:///{tmp}/queue-{uuid}.db)",
    )
    ap.add_argument(
        "--store",
        help="job store URL for queues that keep job state apart (amqp:// needs one:"
        " postgresql://... or redis://...); {tmp}, {run}, {uuid} are substituted as in"
        " --queue-url-template",
    )
    ap.add_argument(
        "--with-sqlite",
        action="store_true",
        help="with another queue: also run the default SQLite queue in every round and"
        f" print the queue's rate as a fraction of it (target {TARGET_OF_SQLITE})",
    )
    ap.add_argument(
        "--processes",
        type=int,
        nargs="+",
        metavar="N",
        help="mailspool --processes: one run per N in every round, each as a fraction of the"
        " first N's (default: mailspool's own, one per CPU)",
    )
    ap.add_argument("--mailspool", help="mailspool executable (default: beside this Python)")
    ap.add_argument("--timeout", type=float, help="kill a run after this many seconds")
    ap.add_argument("--json", type=Path, help="write raw results to this file")
    ap.add_argument("--check", action="store_true", help="exit 3 when the target ratio is missed")
    args = ap.parse_args(argv)
    if args.n < 1 or args.runs < 1 or args.concurrency < 1 or args.sessions < 1:
        ap.error("-n, --runs, --concurrency and --sessions must be positive")
    if any(p < 1 for p in args.processes or ()):
        ap.error("--processes must be positive")
    for tool in (SMTP_SINK, SMTP_SOURCE):
        if not os.access(tool, os.X_OK):
            ap.error(
                f"{tool} not found: install Postfix (see bench/README.md) or set"
                f" MAILSPOOL_{tool.upper().replace('-', '_')} to its path"
            )
    args.mailspool = find_mailspool(args.mailspool)
    if args.timeout is None:
        args.timeout = 120 + args.n / 100  # far above any plausible run
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = os.getloadavg()[0]  # others' load; ours counts from here on
    exit_on_sigterm()
    src: list[RunResult] = []
    counts: list[int | None] = list(args.processes or [None])
    series: list[list[RunResult]] = [[] for _ in counts]
    lite: list[RunResult] = []
    target = Target(args.queue_url_template, args.store)
    beside = args.with_sqlite and target.kind != "sqlite"
    with tempfile.TemporaryDirectory(prefix="mailspool-bench-") as tmp:
        args.tmp = Path(tmp)
        write_csv(args.tmp / "recipients.csv", args.n)
        write_template(args.tmp / "t.txt", args.size)
        size = message_size(args)
        sink = Sink(args.tmp / "smtp-sink.log")
        try:
            print(
                f"# n={args.n} runs={args.runs} sink={shlex.join(sink.cmd)}"
                f" mailspool={args.mailspool}",
                file=sys.stderr,
            )
            for rnd in range(1, args.runs + 1):
                src.append(run_smtp_source(rnd, sink, args))
                log_run(src[-1])
                if beside:
                    lite.append(run_mailspool(rnd, sink, args, Target(DEFAULT_QUEUE)))
                    log_run(lite[-1])
                for runs, processes in zip(series, counts, strict=True):
                    runs.append(run_mailspool(rnd, sink, args, target, processes=processes))
                    log_run(runs[-1])
        finally:
            sink.stop()
        summary = report(args, src, series, size, lite)
    ms = [r for runs in series for r in runs]
    if args.json:
        raw = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "message_bytes": size,
            "smtp_source": [asdict(r) for r in src],
            "mailspool": [asdict(r) for r in series[0]],
            "mailspool_by_processes": {
                str(p): [asdict(r) for r in runs] for p, runs in zip(counts, series, strict=True)
            },
            "mailspool_sqlite_beside": [asdict(r) for r in lite],
            **summary,
        }
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if not all(r.ok for r in src + ms + lite):
        return 1
    if args.check and not summary.get("target_met", False):
        return 3
    if args.check and beside and not summary.get("of_sqlite_met", False):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
