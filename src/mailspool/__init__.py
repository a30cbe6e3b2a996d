"""mailspool: a durable, resumable email dispatcher."""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from mailspool.models import CampaignStats, DeadReason, Enqueued, Job, Outcome, State

#: the names of mailspool.models exported here, imported when first asked for: the
#: command line imports this package for its version, and `mailspool --help` needs none
_MODELS = frozenset({"CampaignStats", "DeadReason", "Enqueued", "Job", "Outcome", "State"})

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


def __getattr__(name: str) -> Any:
    if name in _MODELS or name == "models":
        models = importlib.import_module("mailspool.models")
        return models if name == "models" else getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _MODELS)
