"""What a returned message says: the kind of report and the recipients it is about."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.Enum):
    """How a returned message was recognised."""

    DSN = "dsn"  # RFC 3464 delivery status notification
    ARF = "arf"  # RFC 5965 feedback report (a complaint)
    UNSUBSCRIBE = "unsubscribe"  # a message sent to one of our unsubscribe addresses
    HEURISTIC = "heuristic"  # a non-standard bounce, read by flufl.bounce's detectors
    UNKNOWN = "unknown"  # nothing recognised (or refused: see Report.reason)


@dataclass(frozen=True, slots=True)
class Bounced:
    """One recipient a report is about.

    ``address`` is a validated address, lower-cased. ``status`` is the enhanced status
    code (``5.1.1``) when the report gives one or its diagnostic holds one.
    ``permanent`` is True for a hard failure (5.x.x, or a failure without status) and
    for a complaint; False for a delay or a 4.x.x failure.
    """

    address: str
    status: str | None = None
    permanent: bool = True
    action: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A returned message, parsed.

    ``message_id`` is the Message-ID of the original message (with its angle
    brackets, as mailspool writes it), found in the returned headers; it is how a
    report is matched to a job. ``feedback_type`` is an ARF report's Feedback-Type.
    ``envelope_to`` is the address the report was delivered to, when the caller knows
    it (a VERP address, an unsubscribe address). ``reason`` says why nothing was
    recognised, for a report of kind ``unknown``.
    """

    kind: Kind
    recipients: list[Bounced] = field(default_factory=list)
    message_id: str | None = None
    feedback_type: str | None = None
    envelope_to: str | None = None
    reason: str | None = None

    @property
    def permanent(self) -> list[str]:
        """The addresses that failed for good (or complained)."""
        return [b.address for b in self.recipients if b.permanent]

    @property
    def temporary(self) -> list[str]:
        """The addresses that failed only for now."""
        return [b.address for b in self.recipients if not b.permanent]
