"""The one entry point: :func:`parse_report` turns the bytes of a returned message into
a :class:`~mailspool.inbound.report.Report`, whatever the bytes are.

In order: a message over the size limit is refused unread; then a delivery status
notification (RFC 3464), a feedback report (RFC 5965), a message to one of our
unsubscribe addresses, a non-standard bounce (flufl.bounce's detectors); anything
else is ``unknown``. Malformed input never raises: it gives what could be read, or
``unknown`` with a reason.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Collection
from email.message import Message

from mailspool.inbound import arf, dsn, heuristic, mime
from mailspool.inbound.report import Bounced, Kind, Report

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # a bounce returns at most the original's headers


def parse_report(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    envelope_to: str | None = None,
    unsubscribe_to: Collection[str] = (),
) -> Report:
    """What the returned message ``data`` reports; never raises.

    ``envelope_to`` is the address the message was delivered to (RCPT TO), when
    known; if it is one of ``unsubscribe_to`` the report is an unsubscribe request
    from the message's From address (unless the message is a bounce or complaint).
    """
    to = _envelope(envelope_to)
    if len(data) > max_bytes:
        return Report(
            Kind.UNKNOWN,
            envelope_to=to,
            reason=f"too large: {len(data)} bytes, {max_bytes} max; not parsed",
        )
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        return _classify(msg, to, unsubscribe_to)
    except (Exception, RecursionError) as exc:
        return Report(Kind.UNKNOWN, envelope_to=to, reason=f"unreadable: {type(exc).__name__}")


def is_unsubscribe_request(envelope_to: str | None, unsubscribe_addresses: Collection[str]) -> bool:
    """Whether a message delivered to ``envelope_to`` is an unsubscribe request: the
    address is one of ``unsubscribe_addresses`` (compared as addresses, case aside)."""
    to = _envelope(envelope_to)
    if to is None:
        return False
    return any(_envelope(a) == to for a in unsubscribe_addresses)


def _envelope(value: str | None) -> str | None:
    return mime.address(value) if value else None


def _classify(msg: Message, to: str | None, unsubscribe_to: Collection[str]) -> Report:
    message_id = mime.original_message_id(msg, search_text=True)
    if dsn.is_dsn(msg):
        return _from_dsn(msg, message_id, to)
    if arf.is_arf(msg):
        return Report(
            Kind.ARF, arf.recipients(msg), message_id, arf.feedback_type(msg), envelope_to=to
        )
    if is_unsubscribe_request(to, unsubscribe_to):
        sender = mime.address(mime.header(msg, "From"))
        recipients = [Bounced(sender, None, True, "unsubscribe")] if sender else []
        reason = None if sender else "no valid From address"
        return Report(Kind.UNSUBSCRIBE, recipients, None, envelope_to=to, reason=reason)
    guessed = heuristic.recipients(msg)
    if guessed:
        return Report(Kind.HEURISTIC, guessed, message_id, envelope_to=to)
    return Report(
        Kind.UNKNOWN, [], message_id, envelope_to=to, reason="not a recognised bounce or report"
    )


def _from_dsn(msg: Message, message_id: str | None, to: str | None) -> Report:
    """A DSN's report; when its fields name no failed recipient (but it is not only
    successes), what the heuristic detectors find in its text."""
    found = dsn.recipients(msg)
    if found:
        return Report(Kind.DSN, found, message_id, envelope_to=to)
    guessed = [] if dsn.only_successes(msg) else heuristic.recipients(msg)
    if guessed:
        return Report(Kind.HEURISTIC, guessed, message_id, envelope_to=to)
    return Report(Kind.DSN, [], message_id, envelope_to=to)
