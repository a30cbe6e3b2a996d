"""Bounces and complaints coming back: parsing of delivery status notifications (RFC
3464), feedback reports (RFC 5965) and non-standard bounces into a :class:`Report`
(pure: no I/O), and what a report does to its job and to the suppression list
(:func:`handle`, through the queue's roles).
"""

from __future__ import annotations

from mailspool.inbound.handle import Action, Handled, SoftBouncePolicy, handle
from mailspool.inbound.parse import DEFAULT_MAX_BYTES, is_unsubscribe_request, parse_report
from mailspool.inbound.report import Bounced, Kind, Report

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Action",
    "Bounced",
    "Handled",
    "Kind",
    "Report",
    "SoftBouncePolicy",
    "handle",
    "is_unsubscribe_request",
    "parse_report",
]
