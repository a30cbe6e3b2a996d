"""Address parsing and validation (email-validator, no DNS look-ups).

Validating the domain is most of email-validator's cost, and a mailing list has few
distinct domains, so domains are validated once each (cached); the local part of every
address still goes through email-validator's own local-part rules.
"""

from __future__ import annotations

from email.utils import getaddresses
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_local_part

from mailspool.errors import RejectedRow

_SPECIAL = frozenset('<>,"();:\\[]')
MAX_ADDRESS = 254


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    info = validate_email(
        "postmaster@" + domain, check_deliverability=False, allow_smtputf8=False
    )
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
        raise ValueError(f"the address is too long ({len(normalized)} characters, {MAX_ADDRESS} max)")
    return normalized


def parse_addresses(value: str, field: str) -> list[tuple[str, str]]:
    """Parse a header-style address list into (display name, normalized address) pairs."""
    value = value.strip()
    if not value:
        return []
    if _SPECIAL.isdisjoint(value) and " " not in value:
        pairs = [("", value)]  # one bare address: the common case, no parser needed
    else:
        pairs = getaddresses([value])
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        if not addr and not name:
            continue  # a trailing comma
        if not addr or "@" not in addr:
            raise RejectedRow(field, f"cannot parse an address in {value!r}")
        try:
            norm = normalize(addr)
        except ValueError as exc:
            raise RejectedRow(field, f"invalid address {addr!r}: {exc}") from None
        out.append((name, norm))
    return out
