"""The commands other than ``send`` (see send.py): enqueue, worker, status, preview, dlq."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailspool.cli.send import SendRun
from mailspool.config import Settings, parse_duration
from mailspool.delivery.leases import reclaim_dead_leases
from mailspool.delivery.worker import Worker
from mailspool.errors import ConfigError, RejectedRow
from mailspool.intake.sources import Row, open_source
from mailspool.models import Job
from mailspool.observe.logs import get_logger
from mailspool.queue import DeadFilter
from mailspool.wiring import (
    build_pool,
    check_shared_limits,
    default_campaign,
    limits,
    load_renderer,
    make_producer,
    make_transport,
    observers,
    open_queue,
    worker_config,
)


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handler = {
        "send": cmd_send,
        "enqueue": cmd_enqueue,
        "worker": cmd_worker,
        "status": cmd_status,
        "preview": cmd_preview,
        "dlq": cmd_dlq,
        "serve": cmd_serve,
    }[args.command]
    return await handler(args, settings)


def _source_path(args: argparse.Namespace) -> Path:
    path = Path(args.source)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return path


async def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    return await SendRun(settings, _source_path(args), json_output=args.json).run()


async def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    path = _source_path(args)
    renderer = load_renderer(settings)
    campaign = settings.campaign or default_campaign(path, settings)
    source = open_source(path)
    pool = build_pool(settings, renderer, campaign, path, delivering=False)
    try:
        async with open_queue(settings) as queue:
            producer = await make_producer(queue, renderer, campaign, settings, pool=pool)
            started = time.monotonic()
            rep = await producer.run(source.rows())
    finally:
        if pool is not None:
            await pool.aclose()
    out = {
        "campaign": campaign,
        "rows": rep.rows,
        "queued": rep.queued,
        "new": rep.new,
        "rejected": rep.rejected,
        "duplicates": rep.duplicates,
        "skipped_already_sent": rep.already_sent,
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    if rep.rejects_file:
        out["rejects_file"] = str(rep.rejects_file)
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"campaign {campaign}: {rep.rows} rows, {rep.queued} queued ({rep.new} new),"
            f" {rep.rejected} rejected, {rep.duplicates} duplicates,"
            f" {rep.already_sent} already sent",
            file=sys.stderr,
        )
        if rep.rejects_file:
            print(f"  rejected rows: {rep.rejects_file}", file=sys.stderr)
    return 1 if rep.rejected else 0


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    log = get_logger()
    check_shared_limits(settings)
    queue = open_queue(settings)
    await queue.open()
    metrics_server = None
    try:
        reclaimed = await reclaim_dead_leases(queue, args.campaign)
        if reclaimed:
            log.info("reclaimed leases of a worker that died", jobs=reclaimed)
        shared = limits(settings)
        worker = Worker(
            queue,
            make_transport(settings),
            worker_config(settings, args.campaign),
            observers(settings),
            shared,
        )
        if settings.metrics_port is not None:
            from mailspool.observe.metrics import serve_metrics

            metrics_server = serve_metrics(
                settings.host, settings.metrics_port, queue, worker.transport
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, worker.stop)

        async def idle() -> bool:
            if not args.drain:
                return False
            st = await queue.stats(args.campaign)
            return st.next_due is None or st.next_due > time.time()

        transport = worker.transport.description
        log.info("worker started", owner=worker.owner, queue=queue.url, relay=transport)
        try:
            await worker.run(idle)
        finally:
            if shared is not None:
                await shared.close()
        log.info("worker stopped", owner=worker.owner)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        await queue.close()
    return 0


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from mailspool.api import serve  # optional extra: mailspool[api]

    if settings.workers:
        check_shared_limits(settings)
    return await serve(settings)


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async with open_queue(settings) as queue:
        campaigns = [args.campaign] if args.campaign else await queue.campaigns()
        rows = []
        for c in campaigns:
            st = await queue.stats(c)
            rows.append(
                {
                    "campaign": c,
                    **st.counts,
                    "ambiguous": st.ambiguous,
                    "total": st.total,
                    "last_error": st.last_error,
                }
            )
    if args.json:
        print(json.dumps(rows if not args.campaign else rows[0]))
        return 0
    if not rows:
        print("no campaigns in this queue")
    states = ["queued", "sending", "deferred", "sent", "dead", "ambiguous", "total"]
    for r in rows:
        counts = "  ".join(f"{s}={r.get(s, 0)}" for s in states)
        print(f"{r['campaign']}: {counts}")
        if r["last_error"]:
            print(f"  last error: {r['last_error']}")
    return 0


async def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    from mailspool.message.compose import compose

    renderer = load_renderer(settings)
    for item in open_source(_source_path(args)).rows():
        number = item.row if isinstance(item, RejectedRow) else item.number
        if number != args.row:
            continue
        if isinstance(item, RejectedRow):
            print(f"row {item.row} would be rejected: {item.field}: {item.reason}", file=sys.stderr)
            return 1
        return _preview_row(renderer, item, compose)
    print(f"no row {args.row} in {args.source}", file=sys.stderr)
    return 1


def _preview_row(renderer: Any, row: Row, compose: Any) -> int:
    try:
        rendered = renderer.render(row.values)
    except RejectedRow as exc:
        print(f"row {row.number} would be rejected: {exc.field}: {exc.reason}", file=sys.stderr)
        return 1
    message, _ = compose(rendered, "<preview@mailspool>", time.time())
    print(f"Envelope: {rendered.sender[1]} -> {', '.join(rendered.recipients)}")
    for a in rendered.attachments:
        print(f"Attachment: {a}")
    print(message.decode("utf-8", "replace").replace("\r\n", "\n"))
    return 0


def _dead_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "campaign": job.campaign,
        "recipients": list(job.recipients),
        "reason": job.dead_reason,
        "last_reply": job.last_reply,
        "attempts": job.attempts,
        "message_id": job.message_id,
        "updated_at": datetime.fromtimestamp(job.updated_at, UTC).isoformat(),
    }


async def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    since = time.time() - parse_duration(args.since) if args.since else None
    flt = DeadFilter(args.campaign, args.reason, since, (args.id,) if args.id else ())
    async with open_queue(settings) as queue:
        if args.action == "show":
            if not args.id:
                raise ConfigError("dlq show needs a job id")
            job = await queue.get(args.id)
            if job is None:
                print(f"no job {args.id}", file=sys.stderr)
                return 1
            row = _dead_row(job) | {"state": job.state.value, "key": job.key, "row": job.row}
            print(json.dumps(row, indent=None if args.json else 2))
            return 0
        if args.action == "list":
            rows = [_dead_row(j) for j in await queue.dead_letters(flt)]
            if args.json:
                print(json.dumps(rows))
            else:
                for r in rows:
                    rcpts = ",".join(r["recipients"])
                    print(f"{r['id']}  {r['reason']:<18} {rcpts}  {r['last_reply']}")
                print(f"{len(rows)} dead letters", file=sys.stderr)
            return 0
        n = await (queue.retry_dead(flt) if args.action == "retry" else queue.purge_dead(flt))
        print(json.dumps({args.action: n}) if args.json else f"{args.action}: {n} dead letters")
        return 0
