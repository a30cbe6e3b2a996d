"""``mailspool inbound unmatched``: the returned messages that named no job, kept by the
job store (never dropped): when, to whom, why, their subject; ``--write DIR`` saves each
as ``DIGEST.eml`` (its first 256 KiB) to read, or to give to ``mailspool inbound
ingest DIR`` once what was missing (a secret, a return path) is fixed."""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
from datetime import UTC, datetime

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.queue.returns import Unmatched, clean_text
from mailspool.wiring import open_queue


def subject(item: Unmatched) -> str:
    head = item.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
    try:
        return clean_text(str(parsed.get("Subject", "")), 200)
    except (ValueError, TypeError):  # an undecodable header
        return ""


def row(item: Unmatched) -> dict[str, object]:
    return {
        "digest": item.digest,
        "received_at": datetime.fromtimestamp(item.received_at, UTC).isoformat(),
        "envelope_to": item.envelope_to or None,
        "size": item.size,
        "truncated": item.truncated,
        "subject": subject(item),
        "reason": item.reason,
    }


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    async with open_queue(settings) as queue:
        total = await queue.returns.unmatched_count()
        items = await queue.returns.unmatched(args.limit)
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for item in items:
            (args.write / f"{item.digest}.eml").write_bytes(item.data)
    if settings.json_output:
        for item in items:
            print(json.dumps(row(item)), flush=True)
        return ExitCode.OK
    shown = f"; the first {len(items)}:" if items else ""
    print(f"{total} unmatched returned messages kept{shown}")
    for item in items:
        r = row(item)
        print(f"{r['received_at']}  {item.digest[:16]}  to {r['envelope_to'] or '(unknown)'}")
        print(f"  {r['subject'] or '(no subject)'}: {r['reason']}")
    if args.write is not None:
        print(f"written to {args.write}/ as DIGEST.eml")
    return ExitCode.OK
