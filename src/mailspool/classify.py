"""What a failed attempt means for its job. A pure function of the error.

============================  =============================  ==================
failure                       verdict                        dead reason
============================  =============================  ==================
4xx anywhere (not 421)        retry                          -
421 anywhere                  pause the relay, retry         -
5xx at greeting / ehlo        pause the relay, retry         -
535 / auth refused            pause the relay, retry         -
connection refused            pause the relay, retry         -
TLS failure                   pause the relay, retry         -
reset / closed / timeout      retry                          -
  ... after the final dot     retry, counted as ambiguous    -
552 at RCPT (too many rcpts)  retry                          -
552 or x.3.4 after data       dead                           too_large
x.6.x (bad content)           dead                           invalid_message
other 5xx at MAIL/RCPT/DATA   dead                           rejected_permanent
============================  =============================  ==================

The reply code decides the class; the enhanced status code only refines the reason
(a 450 with 5.1.1 is still a retry).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    SMTPTimeout,
    TLSFailure,
)
from mailspool.models import DeadReason


class Action(enum.Enum):
    RETRY = "retry"
    PAUSE = "pause"  # retry, and stop using the relay for a while
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: DeadReason | None = None
    ambiguous: bool = False
    # what the reply class was, for metrics: 4xx, 5xx, network, timeout, tls, auth
    kind: str = "network"


SESSION_STAGES = frozenset(("connect", "greeting", "ehlo", "starttls", "auth"))
AFTER_DATA = frozenset(("dot",))


def classify(err: DeliveryError) -> Verdict:
    if isinstance(err, AuthFailure):
        return Verdict(Action.PAUSE, kind="auth")
    if isinstance(err, TLSFailure):
        return Verdict(Action.PAUSE, kind="tls")
    if err.code is None:
        return _without_reply(err)
    code, stage = err.code, err.stage
    if code == 421:
        return Verdict(Action.PAUSE, kind="4xx")
    if 400 <= code < 500:
        return Verdict(Action.RETRY, kind="4xx")
    if code == 535 or (code >= 500 and stage in SESSION_STAGES):
        return Verdict(Action.PAUSE, kind="5xx")
    if code == 552 and stage == "rcpt":
        return Verdict(Action.RETRY, kind="5xx")  # too many recipients: try again later
    if 500 <= code < 600:
        return Verdict(Action.DEAD, _dead_reason(err), kind="5xx")
    # a 2xx/3xx where an error was raised means the server broke protocol: retry
    return Verdict(Action.RETRY, kind="network")


def _without_reply(err: DeliveryError) -> Verdict:
    ambiguous = err.stage in AFTER_DATA
    if isinstance(err, SMTPTimeout):
        pause = err.stage in ("connect", "greeting")
        return Verdict(Action.PAUSE if pause else Action.RETRY, ambiguous=ambiguous, kind="timeout")
    if isinstance(err, ConnectError) and err.stage == "connect":
        return Verdict(Action.PAUSE, kind="network")  # refused or unreachable
    return Verdict(Action.RETRY, ambiguous=ambiguous, kind="network")


def _dead_reason(err: DeliveryError) -> DeadReason:
    enhanced = err.enhanced or ""
    if enhanced[2:5] == "3.4" or (err.code == 552 and err.stage in AFTER_DATA):
        return DeadReason.TOO_LARGE
    if enhanced[2:4] == "6.":
        return DeadReason.INVALID_MESSAGE
    return DeadReason.REJECTED_PERMANENT
