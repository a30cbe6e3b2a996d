"""Bounces and complaints coming back: parsing of delivery status notifications (RFC
3464), feedback reports (RFC 5965) and non-standard bounces into a :class:`Report`.

Pure parsing only: nothing here touches the queue or the network.
"""

from __future__ import annotations

from mailspool.inbound.parse import DEFAULT_MAX_BYTES, is_unsubscribe_request, parse_report
from mailspool.inbound.report import Bounced, Kind, Report

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Bounced",
    "Kind",
    "Report",
    "is_unsubscribe_request",
    "parse_report",
]
