"""``mailspool serve``: the HTTP API, with workers in the same process (mailspool.api)."""

from __future__ import annotations

import argparse

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.wiring import check_shared_limits, make_transport


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    from mailspool.api import serve  # optional extra: mailspool[api]

    if settings.workers:
        check_shared_limits(settings)
        # the relay URL and its credentials checked now: a mistake is one clear line
        # (exit 2), not a traceback from the server's start-up
        make_transport(settings)
    return ExitCode.OK if await serve(settings) else ExitCode.USAGE
