"""RFC 3464 delivery status notifications: ``multipart/report;
report-type=delivery-status``, one block of fields per recipient.

A recipient whose Action is ``delivered``, ``relayed`` or ``expanded`` did not
bounce and is left out. A failure is permanent when its status is 5.x.x (or, without
any status, when its Action is ``failed``); a delay, or a 4.x.x status, is
temporary. A missing Status is taken from the enhanced code of the Diagnostic-Code
(``smtp; 550 5.1.1 ...``), or from its basic reply code (550 gives 5.0.0).
"""

from __future__ import annotations

import re
from email.message import Message

from mailspool.inbound import mime
from mailspool.inbound.report import Bounced

NOT_BOUNCES = frozenset({"delivered", "relayed", "expanded"})
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"^\s*([245])\d\d(?:[\s-]|$)")
MAX_DIAGNOSTIC = 1000


def is_dsn(msg: Message) -> bool:
    """Whether ``msg`` is, or holds, a delivery status notification."""
    return delivery_status_part(msg) is not None


def delivery_status_part(msg: Message) -> Message | None:
    """The ``message/delivery-status`` part of a report (the first one), or None."""
    for part in mime.walk(msg, max_depth=3):
        if mime.content_type(part) in ("message/delivery-status", "message/global-delivery-status"):
            return part
    return None


def recipients(msg: Message) -> list[Bounced]:
    """The recipients a DSN reports as failed or delayed, in its order, each once."""
    part = delivery_status_part(msg)
    if part is None:
        return []
    out: dict[str, Bounced] = {}
    for block in mime.field_blocks(part):
        bounced = _recipient(block)
        if bounced is not None and bounced.address not in out:
            out[bounced.address] = bounced
    return list(out.values())


def only_successes(msg: Message) -> bool:
    """Whether a DSN names recipients and every one of them was delivered (relayed,
    expanded): nothing bounced."""
    part = delivery_status_part(msg)
    if part is None:
        return False
    actions = [
        (mime.header(b, "Action") or "").split("(")[0].strip().lower()
        for b in mime.field_blocks(part)
        if mime.header(b, "Final-Recipient") or mime.header(b, "Original-Recipient")
    ]
    return bool(actions) and all(a in NOT_BOUNCES for a in actions)


def _recipient(block: Message) -> Bounced | None:
    addr = mime.address(mime.header(block, "Original-Recipient")) or mime.address(
        mime.header(block, "Final-Recipient")
    )
    if addr is None:
        return None  # the per-message block, or a recipient that is no address
    action = (mime.header(block, "Action") or "").split("(")[0].strip().lower() or None
    if action in NOT_BOUNCES:
        return None
    diagnostic = _diagnostic(mime.header(block, "Diagnostic-Code"))
    status = parse_status(mime.header(block, "Status")) or status_from_diagnostic(diagnostic)
    if status is not None and status.startswith("2"):
        return None  # success without an Action saying so
    if action == "delayed":
        permanent = False
    elif status is not None:
        permanent = status.startswith("5")
    else:
        permanent = True  # failed (or no Action) and nothing more said: a hard failure
    return Bounced(addr, status, permanent, action, diagnostic)


def parse_status(value: str | None) -> str | None:
    """An enhanced status code (``5.1.1``) at the start of a Status value, or None."""
    if not value:
        return None
    found = _STATUS.match(value.strip())
    return ".".join(found.groups()) if found else None


def status_from_diagnostic(diagnostic: str | None) -> str | None:
    """The status a diagnostic implies: its enhanced code (``550 5.1.1 ...``), else
    the class of its basic reply code (``550`` gives ``5.0.0``), else None."""
    if not diagnostic:
        return None
    found = _ENHANCED.search(diagnostic)
    if found:
        return ".".join(found.groups())
    reply = _REPLY.match(diagnostic)
    return f"{reply.group(1)}.0.0" if reply else None


def _diagnostic(value: str | None) -> str | None:
    """A Diagnostic-Code without its type (``smtp;``), on one line, bounded."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9-]{0,30}\s*", kind):
        value = rest
    value = value.strip()
    return value[:MAX_DIAGNOSTIC] or None
