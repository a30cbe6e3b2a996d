"""RFC 5965 feedback reports (complaints): ``multipart/report;
report-type=feedback-report``.

The complaining recipient is the report's Original-Rcpt-To (or Removal-Recipient);
when the report names none, as most providers' redacted reports do not, it is the
To of the returned original message (its third part, ``message/rfc822`` or
``text/rfc822-headers``). A complaint is permanent, except a ``not-spam`` report.
"""

from __future__ import annotations

from email.message import Message

from mailspool.inbound import mime
from mailspool.inbound.report import Bounced
from mailspool.message.addresses import split_list

NOT_COMPLAINTS = frozenset({"not-spam"})
MAX_RECIPIENTS = 50


def feedback_part(msg: Message) -> Message | None:
    """The ``message/feedback-report`` part of a report (the first one), or None."""
    for part in mime.walk(msg, max_depth=3):
        if mime.content_type(part) == "message/feedback-report":
            return part
    return None


def is_arf(msg: Message) -> bool:
    """Whether ``msg`` is, or holds, a feedback report."""
    return feedback_part(msg) is not None


def fields(msg: Message) -> Message | None:
    """The fields of the feedback report (Feedback-Type, Original-Rcpt-To...)."""
    part = feedback_part(msg)
    if part is None:
        return None
    blocks = mime.field_blocks(part)
    return blocks[0] if blocks else None


def feedback_type(msg: Message) -> str | None:
    """The report's Feedback-Type (``abuse``, ``fraud``, ``not-spam``...), lower-case."""
    block = fields(msg)
    value = mime.header(block, "Feedback-Type") if block is not None else None
    return value.split()[0].lower()[:40] if value else None


def recipients(msg: Message) -> list[Bounced]:
    """The recipients who complained, each once."""
    block = fields(msg)
    kind = feedback_type(msg)
    named: list[str] = []
    if block is not None:
        for name in ("Original-Rcpt-To", "Removal-Recipient"):
            named.extend(mime.headers(block, name))
    if not named:
        named = _original_to(msg)
    out: dict[str, Bounced] = {}
    for value in named[:MAX_RECIPIENTS]:
        addr = mime.address(value)
        if addr and addr not in out:
            out[addr] = Bounced(addr, None, kind not in NOT_COMPLAINTS, kind, None)
    return list(out.values())


def _original_to(msg: Message) -> list[str]:
    for part in mime.walk(msg, max_depth=3):
        if part is msg:
            continue
        inner = mime.returned_headers(part)
        if inner is not None:
            values: list[str] = []
            for value in mime.headers(inner, "To"):
                values.extend(split_list(value))
            return values
    return []
