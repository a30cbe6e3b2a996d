"""``mailspool dlq``: dead letters: list, show, retry, purge."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings, parse_duration
from mailspool.errors import ConfigError
from mailspool.models import Job
from mailspool.queue import DeadFilter
from mailspool.wiring import open_existing_queue


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


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    since = time.time() - parse_duration(args.since) if args.since else None
    flt = DeadFilter(settings.campaign, args.reason, since, (args.id,) if args.id else ())
    async with open_existing_queue(settings) as queue:
        if args.action == "show":
            if not args.id:
                raise ConfigError("dlq show needs a job id")
            job = await queue.get(args.id)
            if job is None:
                print(f"no job {args.id}", file=sys.stderr)
                return ExitCode.SOME_FAILED
            row = _dead_row(job) | {"state": job.state.value, "key": job.key, "row": job.row}
            print(json.dumps(row, indent=None if settings.json_output else 2))
            return ExitCode.OK
        if args.action == "list":
            rows = [_dead_row(j) for j in await queue.dead_letters(flt)]
            if settings.json_output:
                print(json.dumps(rows))
            else:
                for r in rows:
                    rcpts = ",".join(r["recipients"])
                    print(f"{r['id']}  {r['reason']:<18} {rcpts}  {r['last_reply']}")
                print(f"{len(rows)} dead letters", file=sys.stderr)
            return ExitCode.OK
        n = await (queue.retry_dead(flt) if args.action == "retry" else queue.purge_dead(flt))
        print(
            json.dumps({args.action: n})
            if settings.json_output
            else f"{args.action}: {n} dead letters"
        )
        return ExitCode.OK
