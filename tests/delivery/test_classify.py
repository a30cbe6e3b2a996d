"""classify(): what a failed attempt means for its job (docs/retries.md, Classification).

Every row builds the error the SMTP session would raise and checks the verdict: the action
(retry, pause the relay, dead), the dead reason, and whether the attempt is ambiguous (the
message may have been delivered although we saw no 250).
"""

from __future__ import annotations

import pytest

from mailspool.delivery.classify import Action, Verdict, classify
from mailspool.delivery.outcomes import refused_retry, sent_reply, transient
from mailspool.errors import (
    AuthFailure,
    ConnectError,
    DeliveryError,
    ReplyError,
    SMTPTimeout,
    Stage,
    TLSFailure,
)
from mailspool.models import DeadReason, Job, State
from mailspool.transport.base import Delivery

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


# -- every recipient refused: one verdict from every recipient's reply ------------------------


def every_rcpt_refused(code: int, enhanced: str | None, **replies: str) -> ReplyError:
    """What the session raises when every RCPT was refused: the reply it picked, with each
    recipient's own reply in ``refused``."""
    err = ReplyError("refused", code=code, enhanced=enhanced, stage="rcpt")
    err.refused = {f"{name}@example.com": reply for name, reply in replies.items()}
    return err


RECIPIENTS_REFUSED: list[tuple[str, DeliveryError, Verdict]] = [
    (
        "all 5xx",
        every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="553 5.1.3 bad address"),
        dead(DeadReason.REJECTED_PERMANENT),
    ),
    (
        "all 4xx",
        every_rcpt_refused(450, "4.2.0", x="450 4.2.0 busy", y="451 4.3.0 later"),
        RETRY,
    ),
    (
        "4xx and 5xx: the temporary one keeps the job",
        every_rcpt_refused(450, "4.2.0", x="450 4.2.0 busy", y="550 5.1.1 no such user"),
        RETRY,
    ),
    (
        "4xx and 5xx, the error naming the 5xx",
        every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="452 4.5.3 too many"),
        RETRY,
    ),
    (
        "a 421 among them",
        every_rcpt_refused(421, "4.3.2", x="550 5.1.1 no such user", y="421 4.3.2 closing"),
        PAUSE,
    ),
    (
        "a 421 among them, the error naming a 5xx",
        every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="421 4.3.2 closing"),
        PAUSE,
    ),
    (
        "a 421 among them, the error naming a 4xx",
        every_rcpt_refused(450, "4.2.0", x="450 4.2.0 busy", y="421 closing"),
        PAUSE,
    ),
    (
        "only a 421",
        every_rcpt_refused(421, None, x="421 4.3.2 closing"),
        PAUSE,
    ),
    (
        "552 too many recipients with a 550",
        every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="552 5.5.3 too many"),
        RETRY,
    ),
    (
        "all 5xx: the reason comes from the error's own reply",
        every_rcpt_refused(554, "5.6.0", x="554 5.6.0 bad content", y="554 5.6.0 bad content"),
        dead(DeadReason.INVALID_MESSAGE),
    ),
    (
        "an unparsable stored reply decides nothing",
        every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="garbage"),
        dead(DeadReason.REJECTED_PERMANENT),
    ),
]


@pytest.mark.parametrize(
    ("err", "expected"),
    [(e, v) for _, e, v in RECIPIENTS_REFUSED],
    ids=[name for name, _, _ in RECIPIENTS_REFUSED],
)
def test_every_recipient_refused(err: DeliveryError, expected: Verdict) -> None:
    check(err, expected)


def test_a_421_among_refused_recipients_counts_as_a_relay_failure_for_metrics() -> None:
    err = every_rcpt_refused(550, "5.1.1", x="550 5.1.1 no such user", y="421 4.3.2 closing")
    assert classify(err) == Verdict(Action.PAUSE, kind="4xx")


# -- some recipients refused: sent to the others, each refusal recorded ---------------------------

#: a refused recipient's reply -> is it tried again later (a job of its own)?
PARTIAL_REFUSAL = [
    ("450 4.2.0 mailbox busy", True),
    ("451 4.3.0 try later", True),
    ("452 4.5.3 too many recipients", True),
    ("552 5.5.3 too many recipients", True),  # 552 at RCPT is a 452
    ("550 5.1.1 no such user", False),
    ("553 5.1.3 bad address", False),
    ("554 5.7.1 relay denied", False),
    ("550 4.1.1 the reply code wins", False),
    ("450 5.1.1 the reply code wins", True),
]


@pytest.mark.parametrize(("reply", "retried"), PARTIAL_REFUSAL)
def test_which_refused_recipients_are_retried(reply: str, retried: bool) -> None:
    assert transient(reply) is retried


def test_some_recipients_refused_records_each_and_retries_the_temporary_ones() -> None:
    job = Job(
        "j1", "c", "row-2", "<m1@example.com>", "a@example.com",
        ("ok@example.com", "later@example.com", "bad@example.com"), b"msg",
        attempts=1, created_at=1000.0,
    )  # fmt: skip
    delivery = Delivery(
        250,
        "2.0.0 queued",
        {"later@example.com": "451 4.2.1 mailbox busy", "bad@example.com": "550 5.1.1 no user"},
    )
    reply = sent_reply(delivery)
    assert reply.startswith("250 2.0.0 queued | refused: ")
    assert "later@example.com: 451 4.2.1 mailbox busy" in reply
    assert "bad@example.com: 550 5.1.1 no user" in reply

    later = sorted(r for r, why in delivery.refused.items() if transient(why))
    assert later == ["later@example.com"]
    child = refused_retry(job, later, not_before=2000.0)
    assert child.recipients == ("later@example.com",)
    assert child.message_id == job.message_id  # the same message, the same Message-ID
    assert child.id != job.id and child.key == "row-2|retry:later@example.com"
    assert (child.state, child.attempts, child.not_before) == (State.QUEUED, 0, 2000.0)
    # the same refusal seen twice queues one retry job, not two
    assert refused_retry(job, later, not_before=3000.0).id == child.id


def test_sent_reply_without_refusals_is_the_relays_reply() -> None:
    assert sent_reply(Delivery(250, "2.0.0 queued")) == "250 2.0.0 queued"


def test_a_stage_given_as_text_is_the_member() -> None:
    """Errors made with a stage's value (as stored replies and user code may) carry the
    Stage itself, so the classification's ``is`` comparisons hold; the text stays the same."""
    err = ConnectError("reset", stage="dot")
    assert err.stage is Stage.DOT and f"{err.stage}" == "dot"
    assert classify(err) == AMBIGUOUS
    with pytest.raises(ValueError, match="nowhere"):
        ReplyError("x", code=550, stage="nowhere")
