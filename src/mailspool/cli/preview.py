"""``mailspool preview``: render one row and print the message; sends nothing.

The row is built by the job builder ``send`` would use (the same campaign, so the same
Message-ID and unsubscribe link), with the headers it adds: List-Unsubscribe with
``--unsubscribe-url``, and the DKIM-Signature with ``--dkim``. Attachments are named,
not shown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import source_path
from mailspool.config import Settings
from mailspool.errors import RejectedRow
from mailspool.intake.sources import Row, open_source
from mailspool.message.render import Renderer
from mailspool.queue import MemoryQueue
from mailspool.wiring import default_campaign, load_renderer, make_producer


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    renderer = load_renderer(settings)
    path = source_path(args)
    for item in open_source(path).rows():
        number = item.row if isinstance(item, RejectedRow) else item.number
        if number != args.row:
            continue
        if isinstance(item, RejectedRow):
            print(f"row {item.row} would be rejected: {item.field}: {item.reason}", file=sys.stderr)
            return ExitCode.SOME_FAILED
        return await _preview_row(settings, renderer, path, item)
    print(f"no row {args.row} in {args.source}", file=sys.stderr)
    return ExitCode.SOME_FAILED


async def _preview_row(settings: Settings, renderer: Renderer, source: Path, row: Row) -> ExitCode:
    campaign = settings.campaign or default_campaign(source, settings)
    # a queue of its own that nothing reads: only the producer's job builder is used
    producer = await make_producer(MemoryQueue(), renderer, campaign, settings)
    try:
        job = producer.builder.build(row, time.time())
    except RejectedRow as exc:
        print(f"row {row.number} would be rejected: {exc.field}: {exc.reason}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    print(f"Envelope: {job.sender} -> {', '.join(job.recipients)}")
    for a in job.attachments:
        print(f"Attachment: {a.filename} ({a.content_type})")
    print(job.message.decode("utf-8", "replace").replace("\r\n", "\n"))
    return ExitCode.OK
