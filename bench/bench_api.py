#!/usr/bin/env python3
"""HTTP API load test: N messages POSTed to ``mailspool serve`` (SQLite queue, workers in
the server process) from this process; every 202 must end as sent, delivered to the sink.

Starts, on free 127.0.0.1 ports:
  - a sink: Postfix smtp-sink (default, -D dump to check every Message-ID) or aiosmtpd
    (``--sink aiosmtpd``, in a thread of this process);
  - ``mailspool serve --queue sqlite:///<tmp>/queue.db --smtp smtp://127.0.0.1:SINK
     --workers W --concurrency C --log-level warning`` with a fresh random token;
then POSTs N messages over ``--connections`` keep-alive HTTP/1.1 connections (one message
per request, or ``--batch B`` per request), each with an Idempotency-Key, and waits until
the campaign has nothing pending.

Checks: every request answered 202; N distinct job ids; the campaign counts sent == N,
dead == 0; the sink received every job's Message-ID. Exit 0 when all hold, 1 otherwise.

Reports requests/s and messages/s of the POST phase (first request sent -> last 202), the
end-to-end rate (first request -> last message sent), and POST latency percentiles.

Examples:
  python bench/bench_api.py                          # N=10000, one message per request
  python bench/bench_api.py -n 10000 --batch 100     # 100 messages per request
  python bench/bench_api.py -n 500 --sink aiosmtpd --json out.json   # quick, no Postfix
Traffic goes to 127.0.0.1 only; the temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import child_env, exit_on_sigterm, find_mailspool

from mailspool.testing import RecordingSMTPServer, SMTPSink, free_port, wait_listening

HOST = "127.0.0.1"
BODY = "Hello {i},\n\n" + "This is the mailspool API benchmark. " * 12 + "\n"


# -- a minimal HTTP/1.1 keep-alive client (the client must not be the bottleneck) -------


class Connection:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}"
        ).encode()
        self.writer.write(head + self.auth + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.writer.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def message(i: int, campaign: str) -> dict[str, Any]:
    return {
        "from": "Bench <bench@example.com>",
        "to": f"user{i}@example{i % 16}.com",
        "subject": f"mailspool API bench {i}",
        "text": BODY.format(i=i),
        "campaign": campaign,
    }


@dataclass
class LoadResult:
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    started: float = 0.0


async def post_all(
    port: int, token: str, n: int, batch: int, connections: int, campaign: str
) -> LoadResult:
    result = LoadResult()
    starts = iter(range(0, n, batch))

    async def client() -> None:
        conn = Connection(port, token)
        await conn.open()
        try:
            for start in starts:
                idx = range(start, min(n, start + batch))
                if batch == 1:
                    payload: Any = message(start, campaign)
                else:
                    payload = {"messages": [message(i, campaign) for i in idx]}
                body = json.dumps(payload).encode()
                key = f"Idempotency-Key: {campaign}-{start}\r\n"
                t0 = time.perf_counter()
                status, data = await conn.request("POST", "/v1/messages", body, key)
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.requests += 1
                result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
                if status == 202:
                    reply = json.loads(data)
                    result.ids.extend(reply["ids"] if "ids" in reply else [reply["id"]])
        finally:
            await conn.close()

    result.started = time.time()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.elapsed_s = time.perf_counter() - t0
    return result


async def wait_until_done(port: int, token: str, campaign: str, timeout: float) -> dict[str, Any]:
    conn = Connection(port, token)
    deadline = time.monotonic() + timeout
    try:
        while True:
            status, data = await conn.request("GET", f"/v1/campaigns/{campaign}")
            body = json.loads(data) if status == 200 else {}
            if status == 200 and body["pending"] == 0:
                return dict(body)
            if time.monotonic() > deadline:
                return body | {"timed_out": True}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


# -- the server and the sink ---------------------------------------------------------------


class Sink:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pg: SMTPSink | None = None
        self.aio: RecordingSMTPServer | None = None

    def start(self) -> int:
        if self.kind == "smtp-sink":
            if not SMTPSink.available():
                raise SystemExit("Postfix smtp-sink is not installed: use --sink aiosmtpd")
            self.pg = SMTPSink(backlog=1024, dump=True).start()
            return self.pg.port
        self.aio = RecordingSMTPServer(unchecked="a benchmark measures speed").start()
        return self.aio.port

    def message_ids(self) -> list[str]:
        if self.pg is not None:
            return [mid for _, mid in self.pg.received()]
        assert self.aio is not None
        return [str(m.message["Message-ID"]) for m in self.aio.messages]

    def stop(self) -> None:
        if self.pg is not None:
            self.pg.cleanup()
        if self.aio is not None:
            self.aio.stop()


def start_server(
    args: argparse.Namespace, tmp: Path, smtp_port: int, token: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        args.mailspool, "serve", "--port", str(port),
        "--queue", f"sqlite:///{tmp}/queue.db", "--smtp", f"smtp://{HOST}:{smtp_port}",
        "--workers", str(args.workers), "--concurrency", str(args.concurrency),
        "--log-level", args.server_log_level, "--log-format", "json",
        "--allowed-from", "example.com",
    ]  # fmt: skip
    env = child_env() | {"MAILSPOOL_API_TOKENS": token}
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait_listening(port, 30):
        proc.kill()
        raise SystemExit(f"mailspool serve did not start:\n{(tmp / 'server.log').read_text()}")
    return proc, port


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    campaign = f"bench-{uuid.uuid4().hex[:8]}"
    sink = Sink(args.sink)
    sink_port = sink.start()
    proc = None
    try:
        proc, port = start_server(args, tmp, sink_port, token)
        load = asyncio.run(post_all(port, token, args.n, args.batch, args.connections, campaign))
        final = asyncio.run(wait_until_done(port, token, campaign, args.timeout))
        done_at = time.time()
        delivered = sink.message_ids()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink.stop()
    expected = {f"<{jid}@example.com>" for jid in load.ids}
    got = set(delivered)
    counts = final.get("counts", {})
    report = {
        "n": args.n,
        "batch": args.batch,
        "connections": args.connections,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "requests": load.requests,
        "statuses": load.statuses,
        "post_elapsed_s": round(load.elapsed_s, 3),
        "requests_per_s": round(load.requests / load.elapsed_s, 1),
        "messages_per_s_post": round(len(load.ids) / load.elapsed_s, 1),
        "end_to_end_s": round(done_at - load.started, 3),
        "messages_per_s_end_to_end": round(len(load.ids) / (done_at - load.started), 1),
        "latency_ms_p50": round(statistics.median(load.latencies_ms or [0.0]), 2),
        "latency_ms_p99": round(percentile(load.latencies_ms, 99), 2),
        "distinct_ids": len(set(load.ids)),
        "sent": counts.get("sent", 0),
        "dead": counts.get("dead", 0),
        "pending": final.get("pending"),
        "delivered": len(delivered),
        "missing_at_sink": len(expected - got),
        "delivered_twice": len(delivered) - len(got),
    }
    report["ok"] = (
        load.statuses == {"202": load.requests}
        and report["distinct_ids"] == args.n
        and report["sent"] == args.n
        and report["dead"] == 0
        and report["missing_at_sink"] == 0
        and not final.get("timed_out")
    )
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="messages (10000)")
    ap.add_argument("--batch", type=int, default=1, help="messages per request (1)")
    ap.add_argument("--connections", type=int, default=32, help="client connections (32)")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers (1)")
    ap.add_argument("--concurrency", type=int, default=32, help="serve --concurrency (32)")
    ap.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink")
    ap.add_argument("--server-log-level", default="warning", help="serve --log-level")
    ap.add_argument("--timeout", type=float, default=600, help="for everything to be sent")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--mailspool", help="mailspool executable (default: beside this Python)")
    args = ap.parse_args()
    args.mailspool = find_mailspool(args.mailspool)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="mailspool-bench-api-") as tmp:
        report = run(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"mailspool serve, SQLite queue, {os.cpu_count()} CPUs")
    print("| metric | value |\n|---|---|")
    for key, value in report.items():
        print(f"| {key} | {value} |")
    print(
        f"\n**{report['requests_per_s']:.0f} requests/s** "
        f"({report['messages_per_s_post']:.0f} messages/s accepted, "
        f"{report['messages_per_s_end_to_end']:.0f} messages/s sent end to end); "
        f"every 202 sent: {'yes' if report['ok'] else 'NO'}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
