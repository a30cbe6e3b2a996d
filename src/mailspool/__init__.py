"""mailspool: a durable, resumable email dispatcher."""

from __future__ import annotations

__version__ = "0.1.0"

from mailspool.errors import (
    AuthFailure,
    ConfigError,
    ConnectError,
    DeliveryError,
    MailspoolError,
    QueueError,
    RejectedRow,
    ReplyError,
    SMTPTimeout,
    SourceError,
    TemplateError,
    TLSFailure,
)
from mailspool.models import CampaignStats, DeadReason, Enqueued, Job, Outcome, State

__all__ = [
    "AuthFailure",
    "CampaignStats",
    "ConfigError",
    "ConnectError",
    "DeadReason",
    "DeliveryError",
    "Enqueued",
    "Job",
    "MailspoolError",
    "Outcome",
    "QueueError",
    "RejectedRow",
    "ReplyError",
    "SMTPTimeout",
    "SourceError",
    "State",
    "TLSFailure",
    "TemplateError",
    "__version__",
]
