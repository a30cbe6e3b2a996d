"""``mailspool preview``: render one row and print the message; sends nothing."""

from __future__ import annotations

import argparse
import sys
import time

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import source_path
from mailspool.config import Settings
from mailspool.errors import RejectedRow
from mailspool.intake.sources import Row, open_source
from mailspool.message.compose import compose
from mailspool.message.render import Renderer
from mailspool.wiring import load_renderer


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    renderer = load_renderer(settings)
    for item in open_source(source_path(args)).rows():
        number = item.row if isinstance(item, RejectedRow) else item.number
        if number != args.row:
            continue
        if isinstance(item, RejectedRow):
            print(f"row {item.row} would be rejected: {item.field}: {item.reason}", file=sys.stderr)
            return ExitCode.SOME_FAILED
        return _preview_row(renderer, item)
    print(f"no row {args.row} in {args.source}", file=sys.stderr)
    return ExitCode.SOME_FAILED


def _preview_row(renderer: Renderer, row: Row) -> ExitCode:
    try:
        rendered = renderer.render(row.values)
    except RejectedRow as exc:
        print(f"row {row.number} would be rejected: {exc.field}: {exc.reason}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    message, _ = compose(rendered, "<preview@mailspool>", time.time())
    print(f"Envelope: {rendered.sender[1]} -> {', '.join(rendered.recipients)}")
    for a in rendered.attachments:
        print(f"Attachment: {a}")
    print(message.decode("utf-8", "replace").replace("\r\n", "\n"))
    return ExitCode.OK
