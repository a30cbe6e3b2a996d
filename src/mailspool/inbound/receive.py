"""One returned message, from its bytes to what it did: :func:`receive` parses it
(:func:`~mailspool.inbound.parse.parse_report`) and applies it
(:func:`~mailspool.inbound.handle.handle`). What reads mailboxes and the SMTP listener
both go through it; they differ only in how they know the address it was delivered to.
"""

from __future__ import annotations

from collections.abc import Collection

from mailspool.inbound.handle import Handled, SoftBouncePolicy, Store, handle
from mailspool.inbound.parse import DEFAULT_MAX_BYTES, parse_report
from mailspool.inbound.report import Report
from mailspool.message.verp import ReturnPath


async def receive(
    data: bytes,
    *,
    envelope_to: str | None,
    store: Store,
    return_path: ReturnPath | None,
    unsubscribe_to: Collection[str],
    policy: SoftBouncePolicy,
    now: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[Report, list[Handled]]:
    """Parse ``data``, delivered to ``envelope_to`` (RCPT TO, or a mailbox's
    Delivered-To), and apply it to the jobs and the suppression list: the report and
    what was done per recipient. Raises what the store raises (nothing is durable then)."""
    report = parse_report(
        data, max_bytes=max_bytes, envelope_to=envelope_to, unsubscribe_to=unsubscribe_to
    )
    handled = await handle(
        report, data, store=store, return_path=return_path, now=now, policy=policy
    )
    return report, handled
