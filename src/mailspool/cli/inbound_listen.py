"""``mailspool inbound``: an SMTP listener for returned mail (bounces, complaints,
unsubscribe requests), the MX of the return-path domain, until SIGTERM or SIGINT
(mailspool.inbound.listener). Each message is applied as ``inbound ingest`` applies a
file, with the envelope recipient (RCPT TO) as the address it was delivered to, and
logged.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.cli.shared import DeliveryRun
from mailspool.config import Settings
from mailspool.errors import ConfigError
from mailspool.inbound import Action, SoftBouncePolicy
from mailspool.inbound.listener import Listener, Outcome, ReturnedMail
from mailspool.observe.logs import get_logger
from mailspool.wiring import load_return_path, open_queue

#: how long a stop waits for the messages being handled
GRACE_S = 30.0


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The STARTTLS context of ``--tls-cert`` and ``--tls-key``, or None without them."""
    if cert is None:
        if key is not None:
            raise ConfigError("--tls-key needs --tls-cert")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert/--tls-key: cannot load {cert}: {exc}") from None
    return ctx


def log_outcome(log: Any, o: Outcome) -> None:
    """One event per message and envelope recipient; the addresses of the recipients a
    report names only at debug level, as the delivery logs do."""
    if o.report is None:
        log.error("returned mail deferred", peer=o.peer, envelope_to=o.envelope_to,
                  size=o.size, error=o.error, reply="451 4.3.0")  # fmt: skip
        return
    actions = {h.action for h in o.handled}
    action = next((a for a in (Action.SUPPRESSED, Action.COUNTED) if a in actions), None)
    log.info(
        "returned mail",
        peer=o.peer,
        envelope_to=o.envelope_to,
        size=o.size,
        tls=o.tls,
        kind=o.report.kind.value,
        action=(action or Action.UNMATCHED).value,
        job=next((h.job for h in o.handled if h.job is not None), None),
        statuses=[b.status for b in o.report.recipients],
        new=any(h.recorded for h in o.handled),
        reason=next((h.reason for h in o.handled if h.reason), None),
    )
    log.debug("returned mail recipients", recipients=[b.address for b in o.report.recipients])


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    log = get_logger("mailspool.inbound")
    if settings.log_level != "debug":  # aiosmtpd logs every command, addresses and all
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    host, port = settings.listen_address
    max_size = settings.max_size
    tls = tls_context(settings.tls_cert, settings.tls_key)
    return_path = load_return_path(settings)
    if return_path is None and not settings.unsubscribe_address:
        raise ConfigError("nothing to receive: give --return-path or --unsubscribe-address")
    policy = SoftBouncePolicy(settings.soft_bounce_limit, settings.soft_bounce_window)
    async with open_queue(settings) as queue:
        handler = ReturnedMail(
            store=queue, return_path=return_path, unsubscribe_to=settings.unsubscribe_address,
            policy=policy, on_outcome=lambda o: log_outcome(log, o), max_size=max_size,
        )  # fmt: skip
        listener = Listener(handler, host=host, port=port, tls=tls)
        try:
            await listener.start()
        except OSError as exc:
            why = exc.strerror or exc
            print(f"mailspool: cannot listen on {host}:{port}: {why}", file=sys.stderr)
            return ExitCode.USAGE
        stopped = asyncio.Event()

        def stopping(signum: int, now: bool) -> None:
            log.info("stopping: finishing messages being handled",
                     signal=signal.Signals(signum).name)  # fmt: skip

        DeliveryRun().stop_on_signals(stopped.set, stopping)
        log.info("listening", host=host, port=listener.port, starttls=tls is not None,
                 max_size=max_size, return_path=settings.return_path,
                 unsubscribe=settings.unsubscribe_address, queue=queue.url)  # fmt: skip
        await stopped.wait()
        await listener.stop(GRACE_S)
        log.info("stopped")
    # a listener is meant to end by a signal: that is success, as for a worker
    return ExitCode.OK
