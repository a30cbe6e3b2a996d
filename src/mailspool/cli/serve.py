"""``mailspool serve``: the HTTP API, with workers in the same process (mailspool.api)."""

from __future__ import annotations

import argparse

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.wiring import check_shared_limits


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    from mailspool.api import serve  # optional extra: mailspool[api]

    if settings.workers:
        check_shared_limits(settings)
    return ExitCode.OK if await serve(settings) else ExitCode.USAGE
