"""``mailspool preview``: render one row and print the message; sends nothing.

The row goes through the code ``send`` and ``enqueue`` run on it: the source's reading
(a malformed row is rejected there) and the producer's job builder (the same campaign,
so the same Message-ID and unsubscribe link), with the headers it adds: List-Unsubscribe
with ``--unsubscribe-url``, and the DKIM-Signature with ``--dkim``. A row they would
reject is reported with the row, field and reason the rejects file would hold, and the
exit status is theirs for a rejected row (1). Attachments are named, not shown.

Rows are numbered as everywhere (intake/sources/base.py): a CSV file's header is row 1,
a JSONL file's first line row 1; blank lines count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import source_path
from mailspool.config import Settings
from mailspool.errors import RejectedRow
from mailspool.intake.sources import CSVSource, Row, Source, open_source
from mailspool.models import Job
from mailspool.queue import MemoryQueue
from mailspool.wiring import default_campaign, load_renderer, make_producer


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    renderer = load_renderer(settings)
    path = source_path(args)
    source = open_source(path)
    campaign = settings.campaign or default_campaign(path, settings)
    # a queue of its own that nothing reads: only the producer's job builder is used
    producer = await make_producer(MemoryQueue(), renderer, campaign, settings)
    picked = _Pick(args.row)
    for built in producer.builder.build_rows(picked.rows(source)):
        if isinstance(built, RejectedRow):
            print(
                f"row {built.row} would be rejected: {built.field}: {built.reason}",
                file=sys.stderr,
            )
            return ExitCode.SOME_FAILED
        _show(built)
        return ExitCode.OK
    print(picked.missing(source, path), file=sys.stderr)
    return ExitCode.SOME_FAILED


class _Pick:
    """The row numbered ``number`` among a source's rows (the first row when None), and
    what the source held when there is none such."""

    def __init__(self, number: int | None) -> None:
        self.number = number
        self.first: int | None = None
        self.last = 0

    def rows(self, source: Source) -> Iterator[Row | RejectedRow]:
        """The row asked for, alone, as the source yields it (perhaps as rejected)."""
        for item in source.rows():
            number = item.number if isinstance(item, Row) else item.row
            if number is None:  # a source always numbers its rejections
                continue
            if self.first is None:
                self.first = number
            self.last = number
            if self.number is None or number == self.number:
                yield item
                return

    def missing(self, source: Source, path: Path) -> str:
        """Why there is no such row: the file has none, or the number is the CSV
        header's, a blank line's, or beyond the last row."""
        if self.first is None:
            return f"no rows in {path}"
        csv = isinstance(source, CSVSource)
        n = self.number or 0
        held = f"its rows are {self.first}-{self.last}"
        if csv and n == 1:
            return f"row 1 of {path} is its header; {held}"
        if 1 <= n <= self.last:
            return f"row {n} of {path} is blank; {held}"
        return f"no row {n} in {path}: {held}" + (" (the header is row 1)" if csv else "")


def _show(job: Job) -> None:
    print(f"Envelope: {job.sender} -> {', '.join(job.recipients)}")
    for a in job.attachments:
        print(f"Attachment: {a.filename} ({a.content_type})")
    print(job.message.decode("utf-8", "replace").replace("\r\n", "\n"))
