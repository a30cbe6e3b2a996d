"""classify(): what a failed attempt means for its job (DESIGN section 6).

Every row builds the error the SMTP session would raise and checks the verdict: the action
(retry, pause the relay, dead), the dead reason, and whether the attempt is ambiguous (the
message may have been delivered although we saw no 250).
"""

from __future__ import annotations

import pytest

from mailspool.classify import Action, Verdict, classify
from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    ReplyError,
    SMTPTimeout,
    TLSFailure,
)
from mailspool.models import DeadReason

RETRY = Verdict(Action.RETRY)
PAUSE = Verdict(Action.PAUSE)
AMBIGUOUS = Verdict(Action.RETRY, ambiguous=True)
STAGES = ("greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "dot")
SESSION = ("greeting", "ehlo", "starttls", "auth")
MESSAGE = ("mail", "rcpt", "data", "dot")


def dead(reason: DeadReason) -> Verdict:
    return Verdict(Action.DEAD, reason)


def check(err: DeliveryError, expected: Verdict) -> None:
    got = classify(err)
    assert (got.action, got.reason, got.ambiguous) == (
        expected.action,
        expected.reason,
        expected.ambiguous,
    ), f"{type(err).__name__} {err.code} {err.enhanced} at {err.stage}: {got}"


# -- every reply class at every stage ------------------------------------------------------

#: (code, stage) -> verdict, for a plain ReplyError without an enhanced code
REPLY_TABLE: dict[tuple[int, str], Verdict] = {}
for _stage in STAGES:
    for _code in (450, 451, 452, 454):  # 4xx: transient
        REPLY_TABLE[_code, _stage] = RETRY
    REPLY_TABLE[421, _stage] = PAUSE  # service closing: the relay, not the message
    REPLY_TABLE[535, _stage] = PAUSE  # authentication failed
    for _code in (500, 501, 550, 553, 554):
        REPLY_TABLE[_code, _stage] = (
            PAUSE if _stage in SESSION else dead(DeadReason.REJECTED_PERMANENT)
        )
    REPLY_TABLE[552, _stage] = PAUSE if _stage in SESSION else dead(DeadReason.TOO_LARGE)
REPLY_TABLE[552, "rcpt"] = RETRY  # "too many recipients": RFC 5321 says treat it as 452


@pytest.mark.parametrize(
    ("code", "stage", "expected"),
    [(c, s, v) for (c, s), v in REPLY_TABLE.items()],
    ids=[f"{c}-at-{s}" for c, s in REPLY_TABLE],
)
def test_reply_code_at_each_stage(code: int, stage: str, expected: Verdict) -> None:
    check(ReplyError("server says no", code=code, stage=stage), expected)


def test_table_covers_every_class_at_every_stage() -> None:
    for stage in STAGES:
        for code in (421, 451, 535, 550, 552):
            assert (code, stage) in REPLY_TABLE


@pytest.mark.parametrize("stage", STAGES)
def test_reply_to_final_dot_is_never_ambiguous(stage: str) -> None:
    """A reply, whatever it says, tells us what the server did: no duplicate risk."""
    for code in (421, 451, 535, 550, 552, 554):
        assert classify(ReplyError("x", code=code, stage=stage)).ambiguous is False


# -- enhanced status codes refine the reason, the reply code decides the class ----------------

ENHANCED = [
    # code, enhanced, stage, verdict
    (552, "5.3.4", "dot", dead(DeadReason.TOO_LARGE)),
    (554, "5.3.4", "dot", dead(DeadReason.TOO_LARGE)),
    (552, "5.3.4", "mail", dead(DeadReason.TOO_LARGE)),  # SIZE= refused at MAIL
    (550, "5.3.4", "data", dead(DeadReason.TOO_LARGE)),
    (552, "5.2.3", "dot", dead(DeadReason.TOO_LARGE)),  # length exceeds admin limit
    (552, None, "dot", dead(DeadReason.TOO_LARGE)),  # 552 after data
    (552, None, "data", dead(DeadReason.TOO_LARGE)),
    (552, "5.0.0", "dot", dead(DeadReason.TOO_LARGE)),  # generic detail: 552 decides
    (552, "5.2.2", "dot", dead(DeadReason.REJECTED_PERMANENT)),  # mailbox full
    (552, "5.7.1", "dot", dead(DeadReason.REJECTED_PERMANENT)),  # policy
    (554, "5.6.0", "dot", dead(DeadReason.INVALID_MESSAGE)),
    (550, "5.6.3", "dot", dead(DeadReason.INVALID_MESSAGE)),
    (554, "5.6.11", "dot", dead(DeadReason.INVALID_MESSAGE)),
    (550, "5.1.1", "rcpt", dead(DeadReason.REJECTED_PERMANENT)),
    (553, "5.1.8", "mail", dead(DeadReason.REJECTED_PERMANENT)),
    (554, "5.7.1", "dot", dead(DeadReason.REJECTED_PERMANENT)),
    (550, "5.3.40", "dot", dead(DeadReason.REJECTED_PERMANENT)),  # not x.3.4
    (550, "5.36.0", "dot", dead(DeadReason.REJECTED_PERMANENT)),  # not x.6.x
    (550, "bogus", "dot", dead(DeadReason.REJECTED_PERMANENT)),
    # the reply code and the enhanced code disagree: the reply code wins
    (450, "5.1.1", "rcpt", RETRY),
    (451, "5.3.4", "dot", RETRY),
    (452, "5.6.0", "dot", RETRY),
    (421, "5.0.0", "mail", PAUSE),
    (550, "4.1.1", "rcpt", dead(DeadReason.REJECTED_PERMANENT)),
    (554, "4.7.1", "dot", dead(DeadReason.REJECTED_PERMANENT)),
    (552, "4.5.3", "rcpt", RETRY),  # too many recipients, whatever the enhanced code says
    (552, "5.5.3", "rcpt", RETRY),
    (552, "5.3.4", "rcpt", RETRY),
]


@pytest.mark.parametrize(
    ("code", "enhanced", "stage", "expected"),
    ENHANCED,
    ids=[f"{c}-{e}-at-{s}" for c, e, s, _ in ENHANCED],
)
def test_enhanced_code_refines_the_reason(
    code: int, enhanced: str | None, stage: str, expected: Verdict
) -> None:
    check(ReplyError("server says no", code=code, enhanced=enhanced, stage=stage), expected)


# -- what the session actually raises ---------------------------------------------------------

SESSION_ERRORS: list[tuple[str, DeliveryError, Verdict]] = [
    # connection refused, unreachable, DNS: the relay is down
    ("refused at connect", ConnectError("cannot connect: refused", stage="connect"), PAUSE),
    # reset or closed in the middle of a session: just this attempt
    ("closed at greeting", ConnectError("closed", stage="greeting"), RETRY),
    ("closed at ehlo", ConnectError("closed", stage="ehlo"), RETRY),
    ("reset at mail", ConnectError("reset", stage="mail"), RETRY),
    ("reset at rcpt", ConnectError("reset", stage="rcpt"), RETRY),
    ("reset at data", ConnectError("reset", stage="data"), RETRY),
    ("lost while writing", ConnectError("reset", stage="write"), RETRY),
    ("closed at rset", ConnectError("closed", stage="rset"), RETRY),
    # lost while waiting for the reply to the final dot: it may have been delivered
    ("lost at dot", ConnectError("reset", stage="dot"), AMBIGUOUS),
    # timeouts
    ("timeout at connect", SMTPTimeout("timed out", stage="connect"), PAUSE),
    ("timeout at greeting", SMTPTimeout("timed out", stage="greeting"), PAUSE),
    ("timeout at ehlo", SMTPTimeout("timed out", stage="ehlo"), RETRY),
    ("timeout at mail", SMTPTimeout("timed out", stage="mail"), RETRY),
    ("timeout at rcpt", SMTPTimeout("timed out", stage="rcpt"), RETRY),
    ("timeout at data", SMTPTimeout("timed out", stage="data"), RETRY),
    (
        "timeout at dot",
        SMTPTimeout("timed out", stage="dot"),
        Verdict(Action.RETRY, ambiguous=True),
    ),
    # TLS: handshake, certificate, STARTTLS not offered or refused
    ("tls handshake at connect", TLSFailure("bad certificate", stage="connect"), PAUSE),
    ("starttls not offered", TLSFailure("no STARTTLS", stage="starttls"), PAUSE),
    ("starttls refused 454", TLSFailure("not now", code=454, stage="starttls"), PAUSE),
    ("starttls refused 502", TLSFailure("no", code=502, stage="starttls"), PAUSE),
    # authentication
    ("535 auth", AuthFailure("bad credentials", code=535, enhanced="5.7.8", stage="auth"), PAUSE),
    ("454 auth", AuthFailure("temporary", code=454, enhanced="4.7.0", stage="auth"), PAUSE),
    ("no AUTH offered", AuthFailure("no AUTH", stage="auth"), PAUSE),
    ("plaintext refused", AuthFailure("refusing to send credentials", stage="auth"), PAUSE),
    # 5xx outside the session set-up and the transaction says nothing about the message
    ("550 to RSET", ReplyError("no", code=550, stage="rset"), RETRY),
    # a non-error reply raised as an error is a protocol violation: retry
    ("250 as error", ReplyError("ok?", code=250, stage="dot"), RETRY),
    ("354 at mail", ReplyError("go ahead?", code=354, stage="mail"), RETRY),
]


@pytest.mark.parametrize(
    ("err", "expected"),
    [(e, v) for _, e, v in SESSION_ERRORS],
    ids=[name for name, _, _ in SESSION_ERRORS],
)
def test_session_errors(err: DeliveryError, expected: Verdict) -> None:
    check(err, expected)


def test_dead_verdicts_always_carry_a_reason() -> None:
    for (code, stage), _ in REPLY_TABLE.items():
        v = classify(ReplyError("x", code=code, stage=stage))
        assert (v.action is Action.DEAD) == (v.reason is not None)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (ReplyError("x", code=451, stage="mail"), "4xx"),
        (ReplyError("x", code=421, stage="mail"), "4xx"),
        (ReplyError("x", code=550, stage="rcpt"), "5xx"),
        (ReplyError("x", code=535, stage="auth"), "auth"),
        (AuthFailure("x", code=535, stage="auth"), "auth"),
        (TLSFailure("x", stage="starttls"), "tls"),
        (SMTPTimeout("x", stage="dot"), "timeout"),
        (ConnectError("x", stage="connect"), "network"),
    ],
)
def test_kind_for_metrics(err: DeliveryError, kind: str) -> None:
    assert classify(err).kind == kind
