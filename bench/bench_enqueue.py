#!/usr/bin/env python3
"""Enqueue throughput and memory: ``mailspool enqueue`` of a large CSV into a SQLite queue.

Streams an N-row CSV (default 1,000,000 rows, header ``Name, Email``) and a template
rendering a ~2 KB message to a temp dir, then runs

  mailspool enqueue big.csv --template t.txt --queue sqlite:///<tmp>/q.db --json
      --log-level warning

as a child process and reports rows/s (N / process wall clock, start-up included) and
the child's peak RSS (its own ru_maxrss, from wait4). Targets: >= 20,000 rows/s and
<= 150 MB peak RSS. The temp dir (CSV, about 2.3 GB of queue for 1M rows) is removed at
the end.

With ``--dkim rsa`` or ``--dkim ed25519`` (repeatable: two keys, two signatures) every
message is signed with a key made by ``mailspool dkim keygen`` for the template's From
domain; with ``--unsubscribe`` every message gets its one-click unsubscribe headers.
Their cost shows as the rate against a plain run (the targets are for a plain run).

Examples:
  python bench/bench_enqueue.py                 # 1,000,000 rows
  python bench/bench_enqueue.py -n 100000       # quick check
  python bench/bench_enqueue.py -n 100000 --dkim rsa --unsubscribe
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import exit_on_sigterm, find_mailspool, run_child, write_csv, write_template

TARGET_ROWS_PER_S = 20_000
TARGET_PEAK_RSS_MB = 150.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=1_000_000, help="rows (default 1000000)")
    ap.add_argument("--size", type=int, default=2048, help="approximate body bytes (2048)")
    ap.add_argument("--mailspool", help="mailspool executable (default: beside this Python)")
    ap.add_argument("--dir", type=Path, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--timeout", type=float, help="kill the run after this many seconds")
    ap.add_argument("--json", type=Path, help="write raw results to this file")
    ap.add_argument("--check", action="store_true", help="exit 3 when a target is missed")
    ap.add_argument(
        "--dkim", action="append", choices=("rsa", "ed25519"), default=[],
        help="sign with a key of this algorithm (repeatable)",
    )  # fmt: skip
    ap.add_argument("--unsubscribe", action="store_true", help="add one-click unsubscribe headers")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("-n must be positive")
    args.mailspool = find_mailspool(args.mailspool)
    if args.timeout is None:
        args.timeout = 120 + args.n / 500  # 500 rows/s would be 40x under target
    return args


def deliverability_options(args: argparse.Namespace, d: Path) -> list[str]:
    """The options (and keys, and secret) for --dkim and --unsubscribe."""
    options: list[str] = []
    for i, algorithm in enumerate(args.dkim):
        selector = f"b{i}"
        subprocess.run(
            [args.mailspool, "dkim", "keygen", "example.com", "--selector", selector,
             "--algorithm", algorithm, "--out", str(d / "keys")],
            check=True, capture_output=True,
        )  # fmt: skip
        options += [
            "--dkim",
            f"example.com:{selector}:{d / 'keys' / f'example.com.{selector}.key'}",
        ]
    if args.unsubscribe:
        args.env["MAILSPOOL_UNSUBSCRIBE_SECRET"] = secrets.token_urlsafe(32)
        options += ["--unsubscribe-url", "https://mail.example.com/u"]
    return options


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="mailspool-enqueue-", dir=args.dir) as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        csv_bytes = write_csv(d / "big.csv", args.n)
        write_template(d / "t.txt", args.size)
        print(
            f"# wrote {args.n} rows ({csv_bytes / 1e6:.1f} MB) in"
            f" {time.perf_counter() - t0:.1f}s to {d}",
            file=sys.stderr,
            flush=True,
        )
        cmd = [
            args.mailspool, "enqueue", str(d / "big.csv"), "--template", str(d / "t.txt"),
            "--queue", f"sqlite:///{d}/q.db", "--json", "--log-level", "warning",
        ]  # fmt: skip
        args.env = {}
        cmd += deliverability_options(args, d)
        print(f"# {shlex.join(cmd)}", file=sys.stderr, flush=True)
        res = run_child(cmd, cwd=d, timeout=args.timeout, env=args.env)
        db_bytes = sum(
            p.stat().st_size for p in d.iterdir() if p.name.startswith("q.db") and p.is_file()
        )
    summary = res.last_json() or {}
    problems = []
    if res.timed_out:
        problems.append(f"killed after {args.timeout:.0f}s")
    elif res.rc != 0:
        problems.append(f"exit {res.rc}: {(res.stderr or res.stdout).strip()[-300:]}")
    if summary.get("queued") != args.n or summary.get("new") != args.n:
        problems.append(f"expected queued=new={args.n}, got {summary or 'no JSON summary'}")

    rate = args.n / res.wall
    rss_mb = res.maxrss_kb / 1024
    in_proc = summary.get("elapsed_s")
    signed = f", DKIM {'+'.join(args.dkim)}" if args.dkim else ""
    links = ", one-click unsubscribe" if args.unsubscribe else ""
    print(
        f"\nmailspool enqueue, N={args.n} rows, ~{args.size} B bodies, SQLite queue{signed}{links}"
    )
    print(f"{os.cpu_count()} CPUs; rate = N / process wall clock (start-up included).\n")
    print("| metric | value | target | |")
    print("|---|---:|---:|---|")
    print(
        f"| rows/s (wall) | {rate:,.0f} | >= {TARGET_ROWS_PER_S:,} |"
        f" {verdict(rate >= TARGET_ROWS_PER_S)} |"
    )
    print(
        f"| peak RSS (MB) | {rss_mb:.1f} | <= {TARGET_PEAK_RSS_MB:.0f} |"
        f" {verdict(rss_mb <= TARGET_PEAK_RSS_MB)} |"
    )
    print(f"| wall s | {res.wall:.2f} | | |")
    if in_proc:
        print(f"| rows/s (in-process elapsed_s {in_proc:.2f}) | {args.n / in_proc:,.0f} | | |")
    print(f"| CPU s (user + sys) | {res.user:.2f} + {res.system:.2f} | | |")
    print(f"| queue file size (MB) | {db_bytes / 1e6:,.0f} | | |")
    for p in problems:
        print(f"\nFAILED: {p}")

    if args.json:
        raw: dict[str, Any] = {
            "n": args.n,
            "cmd": shlex.join(cmd),
            "wall_s": res.wall,
            "rows_per_s": rate,
            "peak_rss_mb": rss_mb,
            "user_s": res.user,
            "sys_s": res.system,
            "queue_bytes": db_bytes,
            "summary": summary,
            "problems": problems,
            "targets": {"rows_per_s": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB},
        }
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    if problems:
        return 1
    if args.check and (rate < TARGET_ROWS_PER_S or rss_mb > TARGET_PEAK_RSS_MB):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
