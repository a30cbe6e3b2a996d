"""Address parsing and validation (email-validator, no DNS look-ups)."""

from __future__ import annotations

from email.utils import getaddresses
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from mailspool.errors import RejectedRow


@lru_cache(maxsize=4096)
def _normalize_cached(addr: str) -> str:
    # the sender address repeats on every row: cache its validation
    return normalize(addr)


def normalize(addr: str) -> str:
    """Validated address, domain in ASCII (IDNA) and lowercase; raises ValueError."""
    try:
        info = validate_email(
            addr, check_deliverability=False, allow_smtputf8=False, allow_display_name=False
        )
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return f"{info.local_part}@{info.ascii_domain.lower()}"


def parse_addresses(value: str, field: str, *, cached: bool = False) -> list[tuple[str, str]]:
    """Parse a header-style address list into (display name, normalized address) pairs."""
    if not value.strip():
        return []
    pairs = getaddresses([value])
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        if not addr and not name:
            continue  # a trailing comma
        if not addr:
            raise RejectedRow(field, f"cannot parse an address in {value!r}")
        try:
            norm = _normalize_cached(addr) if cached or field == "From" else normalize(addr)
        except ValueError as exc:
            raise RejectedRow(field, f"invalid address {addr!r}: {exc}") from None
        out.append((name, norm))
    return out
