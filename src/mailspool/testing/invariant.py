"""The wire invariant the test servers hold every received message to: a pure check of
one message (DATA content and envelope), and the record of a message that broke it.

``check_message`` returns the problems (an empty list for a good message);
``assert_valid_message`` raises them as an AssertionError. The servers in
``mailspool.testing`` call it on every complete, accepted message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesParser
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email


@dataclass
class Received:
    """A message as a test server received it: the envelope, the DATA content
    (dot-unstuffed, its last CRLF included), the AUTH login and whether TLS was on."""

    sender: str
    recipients: list[str]
    data: bytes
    auth: str | None = None
    tls: bool = False

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


CRLF = b"\r\n"
MAX_LINE = 998  # octets, CRLF excluded (RFC 5322 2.1.1)
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# TAB folds and CR/LF end lines (a bare one is reported as such); NUL is reported for the
# whole message
_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_EXACTLY_ONCE = {b"from": "From", b"date": "Date", b"message-id": "Message-ID"}
_AT_MOST_ONCE = {
    b"sender": "Sender",
    b"reply-to": "Reply-To",
    b"to": "To",
    b"cc": "Cc",
    b"subject": "Subject",
    b"in-reply-to": "In-Reply-To",
    b"references": "References",
}
_SHOWN = 2000  # octets of the header section a failure shows


def check_message(
    sender: str, recipients: Sequence[str], data: bytes, *, bcc: Iterable[str] = ()
) -> list[str]:
    """What is wrong with one message as a server received it (``data``: the DATA
    content, dot-unstuffed, its last CRLF included; the envelope); empty if nothing.

    - every line ends with CRLF (no bare CR or LF), none is over 998 octets, no NUL;
    - each header line is a field (a name of printable ASCII but ``:``, then ``:``) or a
      folded continuation of one, with no control character but TAB and no 8-bit octet;
    - From, Date and Message-ID exactly once; Sender, Reply-To, To, Cc, Subject,
      In-Reply-To, References at most once; no Bcc;
    - the envelope sender is empty or a valid address; each recipient is a valid address
      as sent in normal form (email-validator: domain in lowercase ASCII), none appears
      twice (compared case-insensitively), and each is among the To/Cc addresses as the
      stdlib's ``email`` package (``policy.default``) reads them, unless it is in ``bcc``.
    """
    head = header_section(data)
    problems = _line_problems(data)
    names = _header_problems(head, problems)
    problems += _count_problems(names)
    problems += _envelope_problems(sender, recipients, head, bcc)
    return problems


def assert_valid_message(
    sender: str, recipients: Sequence[str], data: bytes, *, bcc: Iterable[str] = ()
) -> None:
    """Raise AssertionError naming the problems ``check_message`` finds, if any."""
    problems = check_message(sender, recipients, data, bcc=bcc)
    if problems:
        raise AssertionError(str(Violation(sender, tuple(recipients), data, tuple(problems))))


@dataclass(frozen=True)
class Violation:
    """A received message that broke the invariant, and how."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    problems: tuple[str, ...]

    def __str__(self) -> str:
        head = header_section(self.data)
        shown = "".join(f"    {line!r}\n" for line in head[:_SHOWN].split(b"\r\n"))
        more = f"    ... ({len(head) - _SHOWN} more octets)\n" if len(head) > _SHOWN else ""
        listed = "".join(f"  - {p}\n" for p in self.problems)
        return (
            f"MAIL FROM:<{self.sender}> RCPT TO:{list(self.recipients)}\n{listed}"
            f"  header section:\n{shown}{more}"
        )


def violation_report(violations: Sequence[Violation], limit: int = 5) -> str:
    """The failure message for messages that broke the invariant (the first ``limit``)."""
    shown = "\n".join(str(v) for v in violations[:limit])
    rest = len(violations) - limit
    more = f"\n... and {rest} more" if rest > 0 else ""
    return f"{len(violations)} message(s) received broke the wire invariant:\n{shown}{more}"


def header_section(data: bytes) -> bytes:
    """The header lines up to the first empty line, without the last one's CRLF."""
    if data.startswith(CRLF):
        return b""
    end = data.find(b"\r\n\r\n")
    return data[:end] if end >= 0 else data.removesuffix(CRLF)


def _line_problems(data: bytes) -> list[str]:
    problems = []
    lines = data.split(CRLF)
    nul = data.find(b"\0")
    if nul >= 0:
        problems.append(f"NUL in line {data.count(CRLF, 0, nul) + 1}")
    if data.count(b"\r") != len(lines) - 1 or data.count(b"\n") != len(lines) - 1:
        n, line = next((n, s) for n, s in enumerate(lines, 1) if b"\r" in s or b"\n" in s)
        cr, lf = line.find(b"\r"), line.find(b"\n")
        kind = "CR" if lf < 0 or 0 <= cr < lf else "LF"
        problems.append(f"bare {kind} in line {n}: {line[:100]!r}")
    if data and not data.endswith(CRLF):
        problems.append("the last line does not end with CRLF")
    if max(map(len, lines)) > MAX_LINE:
        n, line = next((n, s) for n, s in enumerate(lines, 1) if len(s) > MAX_LINE)
        problems.append(f"line {n} is {len(line)} octets long (over {MAX_LINE}): {line[:60]!r}")
    return problems


def _header_problems(head: bytes, problems: list[str]) -> list[bytes]:
    """The header field names (lowercase) in order; problems with the lines are appended.
    Lines are split at any line ending, as a lenient reader would split them."""
    names: list[bytes] = []
    for n, line in enumerate(head.splitlines(), 1):
        if line[:1] in (b" ", b"\t"):
            if not names:
                problems.append(f"header line {n} continues no field: {line[:100]!r}")
        else:
            name, colon, _ = line.partition(b":")
            if colon and _FIELD_NAME.fullmatch(name):
                names.append(name.lower())
            else:
                problems.append(f"header line {n} is not a field (name: value): {line[:100]!r}")
        if m := _CONTROL.search(line):
            problems.append(f"control character {m[0]!r} in header line {n}: {line[:100]!r}")
        if _EIGHT_BIT.search(line):
            problems.append(f"8-bit octet in header line {n}: {line[:100]!r}")
    return names


def _count_problems(names: list[bytes]) -> list[str]:
    counts = Counter(names)
    problems = [
        f"{counts[key]} {name} headers (exactly one expected)"
        for key, name in _EXACTLY_ONCE.items()
        if counts[key] != 1
    ]
    problems += [
        f"{counts[key]} {name} headers (at most one expected)"
        for key, name in _AT_MOST_ONCE.items()
        if counts[key] > 1
    ]
    if counts[b"bcc"]:
        problems.append("a Bcc header (Bcc recipients belong in the envelope only)")
    return problems


@lru_cache(maxsize=4096)
def _address_problem(addr: str) -> str | None:
    try:
        info = validate_email(addr, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return f"is not a valid address ({exc})"
    normal = f"{info.local_part}@{info.ascii_domain}"
    return None if addr == normal else f"is not in normal form ({normal!r})"


def _header_recipients(head: bytes) -> set[str]:
    """The To and Cc addresses (lowercase), read by the stdlib, not by mailspool's parser."""
    msg = BytesParser(policy=policy.default).parsebytes(head + b"\r\n\r\n", headersonly=True)
    found: set[str] = set()
    for name in ("To", "Cc"):
        for value in msg.get_all(name, ()):
            found.update(a.addr_spec.lower() for a in value.addresses)
    return found


def _envelope_problems(
    sender: str, recipients: Sequence[str], head: bytes, bcc: Iterable[str]
) -> list[str]:
    problems = []
    if sender and (problem := _address_problem(sender)):
        problems.append(f"MAIL FROM {sender!r} {problem}")
    seen: dict[str, str] = {}
    for rcpt in recipients:
        if problem := _address_problem(rcpt):
            problems.append(f"RCPT TO {rcpt!r} {problem}")
        key = rcpt.lower()
        if key in seen:
            problems.append(f"RCPT TO {rcpt!r} is a duplicate of {seen[key]!r}")
        else:
            seen[key] = rcpt
    try:
        visible = _header_recipients(head)
    except Exception as exc:  # the stdlib's header parser raises on some malformed input
        return [*problems, f"the stdlib cannot read To/Cc: {exc!r}"]
    hidden = {a.lower() for a in bcc}
    for key, rcpt in seen.items():
        if key not in visible and key not in hidden:
            problems.append(
                f"RCPT TO {rcpt!r} is not among the To/Cc addresses {sorted(visible)}"
                " and not declared as a Bcc"
            )
    return problems


def violation_of(received: Received, bcc: Iterable[str]) -> Violation | None:
    """The received message's violation, if any; never raises (a server thread calls it)."""
    try:
        problems = check_message(received.sender, received.recipients, received.data, bcc=bcc)
    except Exception as exc:
        problems = [f"the check itself failed: {exc!r}"]
    if not problems:
        return None
    return Violation(received.sender, tuple(received.recipients), received.data, tuple(problems))
