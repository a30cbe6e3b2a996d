#!/usr/bin/env python3
"""Enqueue with a large suppression list: ``mailspool enqueue`` of N rows into a SQLite
queue holding 1,000,000 suppression entries, as a ratio to the same enqueue into an empty
queue file, in the same run.

Writes an N-row CSV (default 200,000; header ``Name, Email``) and the ~2 KB template of
bench_enqueue.py, and once a queue file pre-filled with M suppression entries (default
1,000,000; added through the queue's own SuppressionList, in batches, as ``mailspool
suppress import`` would). Then, for --runs rounds, in alternating order:

  (a) mailspool enqueue big.csv --template t.txt --queue sqlite:///<tmp>/empty-R.db
        --json --log-level warning                           (a fresh, empty queue file)
  (b) the same, --queue sqlite:///<tmp>/filled-R.db          (a copy of the pre-filled file)

Rate = N / process wall clock for each. Prints a markdown table and the ratio (b) / (a):
of the median rates, and per round. Target: >= 0.8 (the issue: "with 1,000,000
suppression entries, enqueue keeps at least 0.8 of its rate without them").

The entries are on the CSV's own domains (so the checks walk the same part of the index as
real ones would), for the default list and globally; --hits of them (default 1%) are
addresses of the CSV, which the producer records as suppressed jobs instead of queuing
them: each run's summary must account for every row (new + suppressed = N). A producer
that does not check the list yet queues every row, and the ratio is about 1.0.

Examples:
  python bench/bench_suppression.py                       # N=200000, M=1000000, 3 rounds
  python bench/bench_suppression.py -n 20000 -m 100000 --runs 1     # quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import (
    DOMAINS,
    csv_rows,
    exit_on_sigterm,
    find_mailspool,
    run_child,
    write_csv,
    write_template,
)

TARGET_RATIO = 0.8
FILL_BATCH = 20_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=200_000, help="rows a run enqueues (200000)")
    ap.add_argument("-m", type=int, default=1_000_000, help="suppression entries (1000000)")
    ap.add_argument("--hits", type=float, default=0.01, help="share of rows suppressed (0.01)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of both runs (3)")
    ap.add_argument("--size", type=int, default=2048, help="approximate body bytes (2048)")
    ap.add_argument("--mailspool", help="mailspool executable (default: beside this Python)")
    ap.add_argument("--dir", type=Path, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--timeout", type=float, help="kill a run after this many seconds")
    ap.add_argument("--json", type=Path, help="write raw results to this file")
    ap.add_argument("--check", action="store_true", help="exit 3 when the target is missed")
    args = ap.parse_args(argv)
    if args.n < 1 or args.m < 0 or args.runs < 1 or not 0 <= args.hits <= 1:
        ap.error("-n and --runs must be positive, -m not negative, --hits within 0 to 1")
    args.mailspool = find_mailspool(args.mailspool)
    if args.timeout is None:
        args.timeout = 120 + args.n / 500
    return args


def entries(m: int, n: int, hits: float) -> Any:
    """The M entries: ``hits`` of the N rows' addresses, the rest other addresses on the
    CSV's domains; for the default list, one in ten global."""
    from mailspool.queue.suppression import Reason, Suppression

    rows = [line.split(", ", 1)[1].strip() for line in csv_rows(n)]
    step = max(1, round(1 / hits)) if hits else 0
    hit = rows[::step][:m] if step else []
    now = time.time()
    for i in range(m):
        address = hit[i] if i < len(hit) else f"gone{i}@{DOMAINS[i % len(DOMAINS)]}"
        list_name = None if i % 10 == 9 else "default"
        yield Suppression(address, list_name, Reason.UNSUBSCRIBED, "bench", now)


async def fill(path: Path, m: int, n: int, hits: float) -> tuple[int, float]:
    """Create the queue file with M entries; returns how many of the N rows they suppress,
    and the seconds it took to check the N rows as the producer does (one call a batch
    of 4,000 rows), in this process."""
    from mailspool.queue import SQLiteQueue

    q = SQLiteQueue(path)
    await q.open()
    try:
        chunk = []
        for e in entries(m, n, hits):
            chunk.append(e)
            if len(chunk) == FILL_BATCH:
                await q.suppressions.add(chunk)
                chunk = []
        if chunk:
            await q.suppressions.add(chunk)
        rows = [line.split(", ", 1)[1].strip() for line in csv_rows(n)]
        found, t0 = 0, time.perf_counter()
        for start in range(0, n, 4000):
            batch = rows[start : start + 4000]
            found += len(await q.suppressions.suppressed(batch, "default", time.time()))
        return found, time.perf_counter() - t0
    finally:
        await q.close()


@dataclass
class Run:
    kind: str  # "empty" or "filled"
    round: int
    wall_s: float
    rows_per_s: float
    cpu_s: float
    summary: dict[str, Any]
    problem: str = ""


def one_run(args: argparse.Namespace, d: Path, kind: str, rnd: int, template: Path) -> Run:
    db = d / f"{kind}-{rnd}.db"
    if kind == "filled":
        shutil.copyfile(template, db)
        # on disk before the run: else the run's first fsync (synchronous=FULL) writes the
        # whole copy, and the filled runs pay for the benchmark's own copying
        with db.open("rb+") as f:
            os.fsync(f.fileno())
    cmd = [
        args.mailspool, "enqueue", str(d / "big.csv"), "--template", str(d / "t.txt"),
        "--queue", f"sqlite:///{db}", "--json", "--log-level", "warning",
    ]  # fmt: skip
    print(f"# round {rnd} {kind}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    res = run_child(cmd, cwd=d, timeout=args.timeout)
    summary = res.last_json() or {}
    problem = ""
    if res.timed_out:
        problem = f"killed after {args.timeout:.0f}s"
    elif res.rc != 0:
        problem = f"exit {res.rc}: {(res.stderr or res.stdout).strip()[-300:]}"
    elif summary.get("new", 0) + summary.get("suppressed", 0) != args.n:
        problem = f"expected new + suppressed = {args.n}, got {summary or 'no JSON summary'}"
    for p in d.glob(f"{db.name}*"):
        p.unlink()
    return Run(kind, rnd, res.wall, args.n / res.wall, res.cpu, summary, problem)


def ratio(runs: list[Run]) -> tuple[float | None, list[float]]:
    """(filled / empty of the median rates, filled / empty of each round)."""
    ok = [r for r in runs if not r.problem]
    rates = {k: [r.rows_per_s for r in ok if r.kind == k] for k in ("empty", "filled")}
    if not rates["empty"] or not rates["filled"]:
        return None, []
    rounds = []
    for rnd in sorted({r.round for r in ok}):
        pair = {r.kind: r.rows_per_s for r in ok if r.round == rnd}
        if len(pair) == 2:
            rounds.append(pair["filled"] / pair["empty"])
    return statistics.median(rates["filled"]) / statistics.median(rates["empty"]), rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="mailspool-suppression-", dir=args.dir) as tmp:
        d = Path(tmp)
        write_csv(d / "big.csv", args.n)
        write_template(d / "t.txt", args.size)
        template = d / "filled.template.db"
        t0 = time.perf_counter()
        suppressing, check_s = asyncio.run(fill(template, args.m, args.n, args.hits))
        print(
            f"# {args.m:,} entries ({template.stat().st_size / 1e6:.0f} MB) in"
            f" {time.perf_counter() - t0:.1f}s; they suppress {suppressing:,} of the"
            f" {args.n:,} rows",
            file=sys.stderr,
            flush=True,
        )
        for rnd in range(1, args.runs + 1):
            # alternate which goes first: a machine that speeds up or slows down during a
            # round favours neither
            order = ("empty", "filled") if rnd % 2 else ("filled", "empty")
            for kind in order:
                runs.append(one_run(args, d, kind, rnd, template))

    print(
        f"\nmailspool enqueue, N={args.n:,} rows, SQLite queue, with {args.m:,} suppression"
        f" entries against none; {args.runs} rounds, {os.cpu_count()} CPUs."
    )
    print("Rate = N / process wall clock (start-up included).\n")
    print("| queue file | rows/s min | rows/s median | rows/s max | suppressed (summary) |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("empty", "filled"):
        ok = [r for r in runs if r.kind == kind and not r.problem]
        if not ok:
            print(f"| {kind} | - | - | - | - |")
            continue
        rates = [r.rows_per_s for r in ok]
        supp = {r.summary.get("suppressed", "n/a") for r in ok}
        print(
            f"| {kind} | {min(rates):,.0f} | {statistics.median(rates):,.0f} |"
            f" {max(rates):,.0f} | {', '.join(map(str, sorted(supp, key=str)))} |"
        )
    print(
        f"\nThe check alone (SuppressionList.suppressed, one call a batch of 4,000 rows, in"
        f" this process): {check_s:.2f}s for the {args.n:,} rows,"
        f" {1e6 * check_s / args.n:.1f} µs a row."
    )
    empty = [r.wall_s for r in runs if r.kind == "empty" and not r.problem]
    if empty:
        bound = statistics.median(empty) / (statistics.median(empty) + check_s)
        print(
            f"Added to the empty runs with nothing overlapping it (a producer that waits"
            f" for each check), it would leave them {bound:.3f} of their rate."
        )
    headline, rounds = ratio(runs)
    if headline is None:
        print("\nRatio: no successful pair of runs")
    else:
        verdict = "met" if headline >= TARGET_RATIO else "NOT met"
        print(
            f"\nRatio with / without the entries (median rates): **{headline:.3f}**"
            f" (target >= {TARGET_RATIO}: {verdict}); per round:"
            f" {', '.join(f'{x:.3f}' for x in rounds)}"
        )
        if all(r.summary.get("suppressed", 0) == 0 for r in runs if r.kind == "filled"):
            print(
                "Note: no row was suppressed: this mailspool's enqueue does not check the"
                " suppression list, so the ratio measures nothing of it."
            )
    problems = [f"round {r.round} {r.kind}: {r.problem}" for r in runs if r.problem]
    for p in problems:
        print(f"\nFAILED: {p}")
    if args.json:
        raw = {
            "n": args.n,
            "m": args.m,
            "hits": args.hits,
            "suppressing": suppressing,
            "check_s": check_s,
            "runs": [asdict(r) for r in runs],
            "ratio": headline,
            "round_ratios": rounds,
            "target": TARGET_RATIO,
        }
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if problems:
        return 1
    if args.check and (headline is None or headline < TARGET_RATIO):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
