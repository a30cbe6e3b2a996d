"""Address parsing and validation (email-validator, no DNS look-ups).

Validating the domain is most of email-validator's cost, and a mailing list has few
distinct domains, so domains are validated once each (cached); the local part of every
address still goes through email-validator's own local-part rules.

An address list is split at top-level commas (or semicolons, as some address books
write them) first, and each piece must hold exactly one address. ``email.utils``
alone reads ``boss@example.com <me@example.com>`` as two recipients, so a display name
that happens to look like an address (or a template variable crafted to) would add one.
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_local_part

from mailspool.errors import RejectedRow

_SPECIAL = frozenset('<>,"();:\\[]')
_SEPARATORS = re.compile(r"[,;]")
_ANGLE = re.compile(r"^(?P<name>[^<>]*)<(?P<addr>[^<>]*)>\s*$", re.DOTALL)
MAX_ADDRESS = 254


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    info = validate_email("postmaster@" + domain, check_deliverability=False, allow_smtputf8=False)
    return str(info.ascii_domain).lower()


def normalize(addr: str) -> str:
    """Validated address, domain in ASCII (IDNA) and lowercase; raises ValueError."""
    local, at, domain = addr.rpartition("@")
    try:
        if not at or not local or '"' in local or "\\" in local:
            info = validate_email(
                addr, check_deliverability=False, allow_smtputf8=False, allow_display_name=False
            )
            return f"{info.local_part}@{info.ascii_domain.lower()}"
        ascii_domain = _domain(domain)
        validate_email_local_part(local, allow_smtputf8=False, allow_empty_local=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
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
    pieces: list[str] = []
    start = depth = 0
    quoted = escaped = False
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
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0:
            pieces.append(value[start:i])
            start = i + 1
    pieces.append(value[start:])
    return pieces


def _one_address(piece: str, field: str) -> tuple[str, str] | None:
    """The (display name, address) of one list element; None for an empty element."""
    pairs = [(n, a) for n, a in getaddresses([piece]) if n or a]
    if not pairs:
        return None
    if len(pairs) == 1 and "@" in pairs[0][1] and pairs[0][1] in piece:
        return pairs[0]  # (not in piece: email.utils glued "a@b.com junk" into a@b.comjunk)
    # ``name <addr>`` whose unquoted name email.utils splits off as a second address
    m = _ANGLE.match(piece.strip())
    if m and "@" in m["addr"]:
        name = m["name"].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return name, m["addr"].strip()
    raise RejectedRow(field, f"cannot parse an address in {piece.strip()!r}")


def parse_addresses(value: str, field: str) -> list[tuple[str, str]]:
    """Parse a header-style address list into (display name, normalized address) pairs."""
    value = value.strip()
    if not value:
        return []
    if _SPECIAL.isdisjoint(value) and " " not in value:
        pairs: list[tuple[str, str]] = [("", value)]  # one bare address: no parser needed
    else:
        pairs = [p for p in (_one_address(s, field) for s in split_list(value)) if p is not None]
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        try:
            norm = normalize(addr)
        except ValueError as exc:
            raise RejectedRow(field, f"invalid address {addr!r}: {exc}") from None
        out.append((name, norm))
    return out
