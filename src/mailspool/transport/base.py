"""The transport interface: hand one message to a relay (or the outbox)."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

from mailspool.errors import DeliveryError

#: awaited by a transport once it can send at once, before any of the message goes out
Ready = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to hand over: the envelope sender and recipients (MAIL FROM, RCPT TO),
    the message, and the job it belongs to (the outbox names its file after it).

    Shaping by provider (delivery/shaping.py) adds: ``pool``, the connections it goes
    over (one pool per provider, so each provider's connections are counted and capped
    apart); ``max_messages``, messages one such connection carries (0: the URL's); and
    ``slow_down``, whether a failure is the provider asking to slow down (then no relay
    is to blame: a relay set neither pauses the relay nor fails over).

    ``on_begin`` (the worker's) is told when the message's transaction begins: the
    transport calls :meth:`begin` as MAIL FROM goes out. Before that the message cannot
    have been delivered, so a stop may call the send off and hand the job back untried;
    after it, a send cut short may have been delivered."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes  # the complete message, CRLF line endings, not dot-stuffed
    job_id: str = ""
    pool: str = ""
    max_messages: int = 0
    slow_down: Callable[[DeliveryError], bool] | None = None
    on_begin: Callable[[], None] | None = None

    def begin(self) -> None:
        """The transaction has begun (MAIL FROM is written): the relay may take it now."""
        if self.on_begin is not None:
            self.on_begin()


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
    """Hands messages to a relay (SMTP) or writes them down (the outbox). Made from the
    relay's URL (``from_url``, the class chosen by its scheme: ``TRANSPORTS``); use it as
    ``async with transport:`` so that pooled connections are closed."""

    #: False for transports that do not deliver mail (the outbox)
    delivers: bool = True
    #: where messages go, secrets redacted
    description: str = ""

    @classmethod
    def from_url(cls, url: str, **timeouts: float) -> Transport:
        """The transport for ``url`` (its scheme is this class's); ``timeouts``: the
        connect, command and data timeouts in seconds."""
        raise NotImplementedError(f"{cls.__name__} is not made from a URL")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        """Deliver one message or raise a DeliveryError. Raises only when nothing was
        accepted; a message accepted for some recipients returns with ``refused`` set.

        ``ready`` is awaited once a connection is open, just before the transaction: the
        worker takes its rate-limit slot there, so the time a new connection takes does
        not bunch messages up at the relay. ``envelope.begin()`` is called as the
        transaction begins (MAIL FROM written), after any wait of the transport's own:
        until then the worker may cancel the send, and hands the job back untried."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close pooled connections."""
