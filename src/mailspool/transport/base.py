"""The transport interface: hand one message to a relay (or the outbox)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    data: bytes  # the complete message, CRLF line endings, not dot-stuffed
    job_id: str = ""


@dataclass(slots=True)
class Delivery:
    """A successful hand-off: the final reply, and any recipients the relay refused."""

    code: int
    text: str
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}".strip()[:500]


class Transport(abc.ABC):
    #: False for transports that do not deliver mail (the outbox)
    delivers: bool = True
    #: where messages go, secrets redacted
    description: str = ""

    @abc.abstractmethod
    async def send(self, envelope: Envelope) -> Delivery:
        """Deliver one message or raise a DeliveryError. Raises only when nothing was
        accepted; a message accepted for some recipients returns with ``refused`` set."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close pooled connections."""
