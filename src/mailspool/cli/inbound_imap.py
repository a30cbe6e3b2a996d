"""``mailspool inbound ingest --imap URL``: the bounce mailbox read over IMAP, once or
every ``--imap-poll`` interval until SIGTERM or SIGINT (then exit 0).

Each message is applied as a file is (cli/inbound.py hands in how), then moved to
``--imap-processed-folder`` (mailspool.inbound.imap.ingest_pass). A message whose
outcome could not be written (the queue is down) stays in the mailbox for the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.errors import ConfigError, QueueError
from mailspool.inbound.imap import ImapError, ImapSettings, ingest_pass, parse_imap_url

log = logging.getLogger(__name__)

#: applies one message: ``apply(file, data)``, ``file`` naming the mailbox and the UID
ApplyMessage = Callable[[str, bytes], Awaitable[None]]


def mailbox_settings(settings: Settings) -> ImapSettings:
    """The mailbox to read (ConfigError for a bad URL, no password, or a processed
    folder that is the mailbox itself, which would be read forever)."""
    assert settings.imap is not None
    imap = parse_imap_url(
        settings.imap,
        connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
    )
    folder = settings.imap_processed_folder

    def key(name: str) -> str:
        return name.upper() if name.upper() == "INBOX" else name  # INBOX: any case

    if key(folder) == key(imap.mailbox):
        raise ConfigError(f"--imap-processed-folder must not be the mailbox read ({folder})")
    return imap


async def read_mailbox(imap: ImapSettings, settings: Settings, apply: ApplyMessage) -> ExitCode:
    """One pass over the mailbox, or one every ``settings.imap_poll`` seconds until a
    signal. Exit 2 when the mailbox cannot be read (at the first pass, when polling: later
    failures are logged and the next pass tries again)."""
    stop = asyncio.Event()
    if settings.imap_poll is not None:
        _stop_on_signals(stop)

    async def one(uid: int, data: bytes) -> None:
        await apply(f"{imap.url}/;UID={uid}", data)  # an IMAP URL of the message (RFC 5092)

    first = True
    while True:
        try:
            await ingest_pass(imap, settings.imap_processed_folder, one, stopping=stop.is_set)
        except (ImapError, QueueError) as exc:
            if first or settings.imap_poll is None:
                if isinstance(exc, QueueError):
                    raise
                print(f"mailspool: {exc}", file=sys.stderr)
                return ExitCode.USAGE
            log.warning("could not read %s, trying again in %gs: %s", imap.url,
                        settings.imap_poll, exc)  # fmt: skip
        first = False
        if settings.imap_poll is None or stop.is_set():
            return ExitCode.OK
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.imap_poll)
        if stop.is_set():
            return ExitCode.OK


def _stop_on_signals(stop: asyncio.Event) -> None:
    """The first SIGINT or SIGTERM ends the run after the message being applied (exit 0:
    a signal is how a poller is meant to end); the next exits at once (130 or 143)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int) -> None:
        if stop.is_set():
            raise SystemExit(ExitCode.for_signal(signum))
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signals on this platform
            loop.add_signal_handler(sig, handler, sig)
