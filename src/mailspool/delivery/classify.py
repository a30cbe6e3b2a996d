"""What a failed attempt means for its job. A pure function of the error.

================================  =============================  ==================
failure                           verdict                        dead reason
================================  =============================  ==================
4xx anywhere (not 421)            retry                          -
421 anywhere                      pause the relay, retry         -
5xx at greeting/ehlo/starttls     pause the relay, retry         -
535 / auth refused                pause the relay, retry         -
connection refused (connect)      pause the relay, retry         -
timeout at connect / greeting     pause the relay, retry         -
TLS failure                       pause the relay, retry         -
reset / closed / other timeout    retry                          -
  ... waiting for the final dot   retry, counted as ambiguous    -
552 at RCPT (too many rcpts)      retry                          -
x.3.4 or x.2.3 (size)             dead                           too_large
552 at MAIL (SIZE=), DATA, dot    dead                           too_large
x.6.x (bad content)               dead                           invalid_message
other 5xx at MAIL/RCPT/DATA/dot   dead                           rejected_permanent
5xx at RSET, QUIT, elsewhere      retry                          -
every RCPT refused                the most hopeful reply:        as that reply
                                  421 pause, 4xx retry, 5xx dead
================================  =============================  ==================

The reply code decides the class; the enhanced status code only refines the reason
(a 450 with 5.1.1 is still a retry, a 550 with 4.x.x is still dead). A specific enhanced
code beats the reply code for the reason: 552 5.2.2 (mailbox full) is rejected_permanent.

When every recipient was refused, the error carries each recipient's reply (``refused``)
and the job gets one verdict from all of them, whichever reply the error itself names: a
421 among them pauses the relay (the server is closing the session), else a temporary
refusal keeps the job for a retry rather than dead-lettering it with the permanent ones.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    ReplyError,
    SMTPTimeout,
    Stage,
    TLSFailure,
)
from mailspool.models import DeadReason


class Action(enum.Enum):
    """What the worker does with the job after a failed attempt."""

    RETRY = "retry"
    PAUSE = "pause"  # retry, and stop using the relay for a while
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed attempt means for its job: the ``action``; the dead ``reason`` when
    the action is DEAD; ``ambiguous`` when the message may have been delivered although
    no 250 was seen (the connection was lost waiting for the reply to the final dot); and
    ``kind``, the failure's class for metrics and logs."""

    action: Action
    reason: DeadReason | None = None
    ambiguous: bool = False
    # what the reply class was, for metrics: 4xx, 5xx, network, timeout, tls, auth
    kind: str = "network"


#: before any message is under way: a 5xx here is about the relay, not the message
SESSION_STAGES = frozenset((Stage.CONNECT, Stage.GREETING, Stage.EHLO, Stage.STARTTLS, Stage.AUTH))
#: a 5xx at one of these is about the message or its envelope
MESSAGE_STAGES = frozenset((Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.DOT))
#: 552 at these means the message is too big (RFC 1870 at MAIL with SIZE=, RFC 5321 after DATA)
SIZE_552_STAGES = frozenset((Stage.MAIL, Stage.DATA, Stage.DOT))


def classify(err: DeliveryError) -> Verdict:
    """The verdict on one failed attempt (the table above)."""
    if isinstance(err, AuthFailure):
        return Verdict(Action.PAUSE, kind="auth")
    if isinstance(err, TLSFailure):
        return Verdict(Action.PAUSE, kind="tls")
    if err.code is None:
        return _without_reply(err)
    verdict = _with_reply(err.code, err)
    if err.refused:
        return _every_recipient_refused(err, verdict)
    return verdict


def _every_recipient_refused(err: DeliveryError, own: Verdict) -> Verdict:
    """One verdict for a job whose every RCPT was refused: a pause if any reply says so
    (a 421), else a retry if any reply is temporary, else the error's own verdict."""
    verdicts = [own]
    for reply in err.refused.values():
        code, enhanced, text = _parse_reply(reply)
        if code is not None:
            one = ReplyError(text, code=code, enhanced=enhanced, stage=err.stage)
            verdicts.append(_with_reply(code, one))
    for action in (Action.PAUSE, Action.RETRY):
        for v in verdicts:
            if v.action is action:
                return v
    return own


def _parse_reply(reply: str) -> tuple[int | None, str | None, str]:
    """(code, enhanced code, text) of a stored reply line such as ``550 5.1.1 no user``."""
    head, _, rest = reply.strip().partition(" ")
    if not (len(head) == 3 and head.isascii() and head.isdigit()):
        return None, None, reply
    word, _, text = rest.partition(" ")
    if _enhanced(word) is not None:
        return int(head), word, text
    return int(head), None, rest


def _with_reply(code: int, err: DeliveryError) -> Verdict:
    stage = err.stage
    if 400 <= code < 500:
        return Verdict(Action.PAUSE if code == 421 else Action.RETRY, kind="4xx")
    if not 500 <= code < 600:
        # a 1xx/2xx/3xx (or garbage) raised as an error: the server broke protocol, retry
        return Verdict(Action.RETRY, kind="network")
    if code == 535 or stage in SESSION_STAGES:
        return Verdict(Action.PAUSE, kind="auth" if code == 535 else "5xx")
    # 552 at RCPT is "too many recipients" (RFC 5321 4.5.3.1.10): treat it as a 452
    if stage in MESSAGE_STAGES and not (code == 552 and stage is Stage.RCPT):
        return Verdict(Action.DEAD, _dead_reason(err), kind="5xx")
    # too many recipients, or a 5xx to RSET, QUIT or anything else that says nothing
    # about this message: try again
    return Verdict(Action.RETRY, kind="5xx")


def _without_reply(err: DeliveryError) -> Verdict:
    # the message was transmitted: only the reply to the final dot remains unknown
    ambiguous = err.stage is Stage.DOT
    if isinstance(err, SMTPTimeout):
        pause = err.stage is Stage.CONNECT or err.stage is Stage.GREETING
        return Verdict(Action.PAUSE if pause else Action.RETRY, ambiguous=ambiguous, kind="timeout")
    if isinstance(err, ConnectError) and err.stage is Stage.CONNECT:
        return Verdict(Action.PAUSE, kind="network")  # refused or unreachable
    return Verdict(Action.RETRY, ambiguous=ambiguous, kind="network")


def _enhanced(text: str | None) -> tuple[int, int] | None:
    """(subject, detail) of an RFC 3463 code such as ``5.3.4``; None if absent or malformed."""
    parts = (text or "").strip().split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        return None
    return int(parts[1]), int(parts[2])


def _dead_reason(err: DeliveryError) -> DeadReason:
    enhanced = _enhanced(err.enhanced)
    # X.3.4 message too big for system, X.2.3 message length exceeds administrative limit
    if enhanced in ((3, 4), (2, 3)):
        return DeadReason.TOO_LARGE
    if enhanced is not None and enhanced[0] == 6:  # X.6.x: bad message content or encoding
        return DeadReason.INVALID_MESSAGE
    specific = enhanced is not None and enhanced != (0, 0)
    if err.code == 552 and err.stage in SIZE_552_STAGES and not specific:
        return DeadReason.TOO_LARGE
    return DeadReason.REJECTED_PERMANENT
