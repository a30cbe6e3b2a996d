"""Address parsing and validation (email-validator, no DNS look-ups).

Validating the domain is most of email-validator's cost, and a mailing list has few
distinct domains, so domains are validated once each (cached); the local part of every
address still goes through email-validator's own local-part rules.

An address list is split at top-level commas (or semicolons, as some address books
write them) first, and each piece must hold exactly one address. ``email.utils``
reads ``boss@example.com <me@example.com>`` as two recipients, so a display name that
happens to look like an address (or a template variable crafted to) would add one; it
is not used here.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from types import ModuleType

from mailspool.errors import RejectedRow

_SPECIAL = frozenset('<>,"();:\\[]')
_SEPARATORS = re.compile(r"[,;]")
# name <addr>, where the name may hold quoted strings with anything in them
_ANGLE = re.compile(r'^(?P<name>(?:"(?:[^"\\]|\\.)*"|[^<>"])*)<(?P<addr>[^<>]*)>$', re.DOTALL)
_COMMENTED = re.compile(r"^(?P<addr>[^()\s]+)\s*\((?P<comment>[^()]*)\)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPED = re.compile(r"\\(.)")
MAX_ADDRESS = 254
MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1


@cache
def _validator() -> ModuleType:
    """email-validator, imported at the first address: its import compiles the RFCs'
    grammars (20 ms), which commands that validate no address, and `send` until it
    reads its first row, need not pay."""
    import email_validator
    import email_validator.syntax

    return email_validator


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    info = _validator().validate_email(
        "postmaster@" + domain, check_deliverability=False, allow_smtputf8=False
    )
    return str(info.ascii_domain).lower()


def normalize_domain(value: str) -> str:
    """A domain as an operator gives it (``example.com`` or ``@example.com``): validated,
    IDNA, lowercase; raises ValueError."""
    ev = _validator()
    try:
        return _domain(value.strip().removeprefix("@"))
    except ev.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def normalize(addr: str) -> str:
    """Validated address, domain in ASCII (IDNA) and lowercase; raises ValueError."""
    local, at, domain = addr.rpartition("@")
    ev = _validator()
    try:
        if not at or not local or '"' in local or "\\" in local:
            info = ev.validate_email(
                addr, check_deliverability=False, allow_smtputf8=False, allow_display_name=False
            )
            return f"{info.local_part}@{info.ascii_domain.lower()}"
        ascii_domain = _domain(domain)
        ev.syntax.validate_email_local_part(local, allow_smtputf8=False, allow_empty_local=False)
    except ev.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if len(local.encode()) > MAX_LOCAL_PART:
        raise ValueError(
            f"the part before the @ is too long ({len(local.encode())} characters,"
            f" {MAX_LOCAL_PART} max)"
        )
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > MAX_ADDRESS:
        raise ValueError(
            f"the address is too long ({len(normalized)} characters, {MAX_ADDRESS} max)"
        )
    return normalized


def split_list(value: str) -> list[str]:
    """Split an address list at commas and semicolons that are not inside a quoted
    string, a comment or angle brackets."""
    if '"' not in value and "(" not in value:
        return _SEPARATORS.split(value)
    return _scan(value)[0]


def _scan(value: str) -> tuple[list[str], bool]:
    """The pieces of an address list, and whether its quotes, comments and angle
    brackets all close."""
    pieces: list[str] = []
    start = depth = 0
    quoted = escaped = False
    balanced = True
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch in "(<":
            depth += 1
        elif ch in ")>":
            balanced = balanced and depth > 0
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0:
            pieces.append(value[start:i])
            start = i + 1
    pieces.append(value[start:])
    return pieces, balanced and depth == 0 and not quoted and not escaped


def single_element(value: str) -> bool:
    """Whether a value placed in an address list stays one element of it: no separator
    outside a quoted string, comment or angle brackets, and nothing left open that
    would swallow the text after it. A value from a row may fill one address slot of a
    template, never add a recipient."""
    if not any(c in value for c in ',;"()<>\\'):
        return True
    pieces, balanced = _scan(value)
    return balanced and count_elements(pieces) <= 1


def count_elements(pieces: list[str]) -> int:
    return sum(1 for p in pieces if p.strip())


def _unquote(name: str) -> str:
    """A display name with its quoted strings unwrapped: ``"Smith, J" Jr`` -> ``Smith, J Jr``."""
    return _QUOTED.sub(lambda m: _ESCAPED.sub(r"\1", m[1]), name).strip()


def _one_address(piece: str, field: str) -> tuple[str, str] | None:
    """The (display name, address) of one list element; None for an empty element.

    Either ``name <addr>`` or a bare ``addr`` with an optional ``(comment)``; anything
    else is rejected rather than guessed at (email.utils reads ``John Smith`` as
    ``John`` and ``a@b.com junk`` as ``a@b.comjunk``).
    """
    piece = piece.strip()
    if not piece:
        return None  # "a@example.com," or "a@example.com;;"
    m = _ANGLE.match(piece)
    if m:
        addr = m["addr"].strip()
        if not addr:
            raise RejectedRow(field, f"cannot parse an address in {piece!r}")
        return _unquote(m["name"]), addr
    if "<" in piece or ">" in piece:
        raise RejectedRow(field, f"cannot parse an address in {piece!r}")
    m = _COMMENTED.match(piece)
    if m:
        return m["comment"].strip(), m["addr"]
    return "", piece


def parse_addresses(value: str, field: str, limit: int | None = None) -> list[tuple[str, str]]:
    """Parse a header-style address list into (display name, normalized address) pairs;
    more than ``limit`` elements are refused before any is validated."""
    value = value.strip()
    if not value:
        return []
    if _SPECIAL.isdisjoint(value) and " " not in value:
        pairs: list[tuple[str, str]] = [("", value)]  # one bare address: no parser needed
    else:
        pieces = split_list(value)
        if limit is not None and len(pieces) > limit and count_elements(pieces) > limit:
            raise RejectedRow(field, f"more than {limit} recipients")
        pairs = [p for p in (_one_address(s, field) for s in pieces) if p is not None]
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        try:
            norm = normalize(addr)
        except ValueError as exc:
            raise RejectedRow(field, f"invalid address {addr!r}: {exc}") from None
        out.append((name, norm))
    return out
