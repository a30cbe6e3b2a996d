#!/usr/bin/env python3
"""What webhooks cost ``mailspool send``: in the same interleaved rounds against one
Postfix smtp-sink, (a) smtp-source (the reference), (b) ``mailspool send`` and (c) the
same with ``--webhook`` to one endpoint on 127.0.0.1 that takes every ``sent`` event
(a small receiver process answering 204). Prints each client's rate, the ratio of each
mailspool run to smtp-source, and (c)/(b): the share of its rate send keeps with a
webhook (target 0.9), plus how many events the receiver got.

Rates are N / process wall clock, as in bench_send.py; (c)'s wall clock includes
``--webhook-drain``, the wait at the end for the events to be taken (so a run whose
events are not all delivered at once counts their delivery too).

  python bench/bench_webhooks.py                 # N=20000, 3 rounds, SQLite queue
  python bench/bench_webhooks.py -n 2000 --runs 1
"""

from __future__ import annotations

import base64
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import exit_on_sigterm, write_csv, write_template
from bench_send import (
    DEFAULT_QUEUE,
    RunResult,
    Sink,
    Target,
    free_port,
    log_run,
    message_size,
    parse_args,
    rate_ratio,
    run_mailspool,
    run_smtp_source,
    table_row,
)

TARGET_KEPT = 0.9


def start_receiver(port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mailspool.testing.webhooks", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "listening":  # it says so once it listens
        proc.kill()
        raise SystemExit("the webhook receiver did not start")
    return proc


def stop_receiver(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return int(out.split()[-1])


def main() -> int:
    args = parse_args(sys.argv[1:])
    args.load_before = os.getloadavg()[0]
    exit_on_sigterm()
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    args.child_env = {"MAILSPOOL_WEBHOOK_SECRET": f"whsec_{key}"}
    target = Target(args.queue_url_template or DEFAULT_QUEUE, args.store)
    if args.processes and len(args.processes) > 1:
        raise SystemExit("bench_webhooks.py takes one --processes N")
    processes = args.processes[0] if args.processes else None
    src: list[RunResult] = []
    plain: list[RunResult] = []
    hooked: list[RunResult] = []
    received: list[int] = []
    with tempfile.TemporaryDirectory(prefix="mailspool-bench-") as tmp:
        args.tmp = Path(tmp)
        write_csv(args.tmp / "recipients.csv", args.n)
        write_template(args.tmp / "t.txt", args.size)
        size = message_size(args)
        sink = Sink(args.tmp / "smtp-sink.log")
        try:
            for rnd in range(1, args.runs + 1):
                src.append(run_smtp_source(rnd, sink, args))
                log_run(src[-1])
                plain.append(run_mailspool(rnd, sink, args, target, processes=processes))
                log_run(plain[-1])
                port = free_port()
                rx = start_receiver(port)
                url = f"sent=http://127.0.0.1:{port}/hook"
                extra = ["--webhook", url, "--webhook-drain", "120s"]
                hooked.append(
                    run_mailspool(rnd, sink, args, target, extra, " + webhook", processes)
                )
                received.append(stop_receiver(rx))
                log_run(hooked[-1])
                print(f"[round {rnd}] webhook receiver got {received[-1]} requests")
        finally:
            sink.stop()
    print(f"\nN={args.n} messages/run, {args.runs} rounds, {os.cpu_count()} CPUs, message"
          f" ~{size} B, load average {args.load_before:.2f} before.\n")  # fmt: skip
    print("| client | msg/s min | msg/s median | msg/s max | wall s (median)"
          " | client CPU % | client CPU µs/msg | sink CPU % | failed runs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for runs in (src, plain, hooked):
        print(table_row(runs[0].client, runs, args.n))
    base, _ = rate_ratio(plain, src)
    with_hook, _ = rate_ratio(hooked, src)
    kept, rounds = rate_ratio(hooked, plain)
    if base is None or with_hook is None or kept is None:
        print("\nno successful set of runs")
        return 1
    print(f"\nRatio to smtp-source: send {base:.3f}; send --webhook {with_hook:.3f}")
    verdict = "met" if kept >= TARGET_KEPT else "NOT met"
    print(
        f"Kept with a webhook (median rates): **{kept:.3f}** (target {TARGET_KEPT}: {verdict});"
        " per round: " + ", ".join(f"round {r}: {x:.3f}" for r, x in rounds)
    )
    print(f"Events received per run: {statistics.median(received):.0f} (expected {args.n})")
    ok = all(r.ok for r in src + plain + hooked) and all(n >= args.n for n in received)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
