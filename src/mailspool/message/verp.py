"""VERP return paths: an envelope sender that names its job, signed.

With ``--return-path bounces@bounce.example.com`` every message's envelope sender (MAIL
FROM, the Return-Path a receiver records) is ``bounces+TOKEN@bounce.example.com``, so
that a bounce, which goes to the envelope sender, says which job it is about. The From
header is not touched.

The token is ``base32(job id + tag)``, lower-case and without padding:

- the job id: its 16 bytes (the 32 hexadecimal digits of :func:`mailspool.models.job_id`);
- tag: HMAC-SHA256 over a label of its own (not the unsubscribe links') and the id,
  truncated to :data:`TAG_BYTES` (9) bytes.

25 bytes make exactly :data:`TOKEN_CHARS` (40) base32 characters, with no padding and no
spare bits, so a token has one spelling only (but for case). The base32 alphabet is
letters and the digits 2-7: a mail server that lower-cases (or upper-cases) the local
part leaves the token readable, as it is decoded whatever its case. The local part
``bounces+TOKEN`` is 48 octets; RFC 5321 allows 64, so the base's own local part may be
at most :data:`MAX_BASE_LOCAL` (23) octets.

72 bits of tag: a forger who wants a bounce to be taken as one of ours must guess it,
and every guess is a message sent to the bounce address, answered by nothing. An
address that is not ours, forged, altered, truncated or extended reads as None.

Secrets come from :data:`ENV_SECRET` or :data:`ENV_SECRET_FILE` (comma-separated: the
first signs, all verify, as for the unsubscribe links: message/unsubscribe.py
:class:`Secrets`). They are never shown.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from mailspool.errors import ConfigError
from mailspool.message.addresses import MAX_LOCAL_PART, normalize
from mailspool.message.unsubscribe import Secrets

ENV_SECRET = "MAILSPOOL_RETURN_PATH_SECRET"
ENV_SECRET_FILE = "MAILSPOOL_RETURN_PATH_SECRET_FILE"
OPTION = "--return-path"
JOB_ID_BYTES = 16
TAG_BYTES = 9
#: base32 of the id and the tag: 25 bytes, 200 bits, 40 characters of 5 bits
TOKEN_CHARS = (JOB_ID_BYTES + TAG_BYTES) * 8 // 5
#: the longest local part a --return-path base may have: BASE+TOKEN fits in 64 octets
MAX_BASE_LOCAL = MAX_LOCAL_PART - 1 - TOKEN_CHARS
SEPARATOR = "+"
_LABEL = b"mailspool return path\0"
_TOKEN = re.compile(rf"[a-z2-7]{{{TOKEN_CHARS}}}", re.ASCII | re.IGNORECASE)
_JOB_ID = re.compile(rf"[0-9a-f]{{{2 * JOB_ID_BYTES}}}", re.ASCII)


@lru_cache(maxsize=64)
def split_base(base: str) -> tuple[str, str]:
    """(local part, domain) of a return-path base address, checked: a valid address
    (message/addresses.py) whose local part is unquoted and at most
    :data:`MAX_BASE_LOCAL` octets long; the domain in lower-case IDNA. ValueError saying
    what is wrong."""
    text = base.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if '"' in text or "\\" in text:
        raise ValueError(f"{base!r}: a quoted local part is not supported")
    try:
        address = normalize(text)
    except ValueError as exc:
        raise ValueError(f"{base!r}: {exc}") from None
    local, _, domain = address.rpartition("@")
    if len(local.encode()) > MAX_BASE_LOCAL:
        raise ValueError(
            f"{base!r}: the part before the @ is {len(local.encode())} characters; at most"
            f" {MAX_BASE_LOCAL} leave room for the {TOKEN_CHARS}-character token within"
            f" the {MAX_LOCAL_PART}-character limit"
        )
    return local, domain


def check_return_path(base: str) -> str:
    """``base`` as ``--return-path`` takes it (``LOCAL@DOMAIN``, the domain lower-case),
    or ConfigError naming the option."""
    try:
        local, domain = split_base(base)
    except ValueError as exc:
        raise ConfigError(f"{OPTION}: {exc}") from None
    return f"{local}@{domain}"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").lower()


def make_return_path(secrets: Secrets, base: str, job_id: str) -> str:
    """The envelope sender for job ``job_id`` (32 hexadecimal digits): ``base``'s local
    part, ``+``, the token, ``@`` and its domain. ValueError for a bad base or job id."""
    local, domain = split_base(base)
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id[:40]!r}")
    raw = bytes.fromhex(job_id)
    token = _b32(raw + secrets.tag(_LABEL, raw, TAG_BYTES))
    return f"{local}{SEPARATOR}{token}@{domain}"


def read_return_path(secrets: Secrets, address: str, base: str) -> str | None:
    """The job id that ``address`` (a bounce's recipient; ``<...>`` allowed) names, when
    it is ``base`` with a token one of ``secrets`` made; None for anything else (never
    an exception, whatever the address). ValueError only for a bad ``base``."""
    token = _token_of(address, *split_base(base))
    if token is None:
        return None
    try:
        data = base64.b32decode(token.upper())
    except (binascii.Error, ValueError):
        return None
    raw, tag = data[:JOB_ID_BYTES], data[JOB_ID_BYTES:]
    if len(raw) != JOB_ID_BYTES or len(tag) != TAG_BYTES:
        return None
    return raw.hex() if secrets.check(_LABEL, raw, tag) else None


def _token_of(address: str, local: str, domain: str) -> str | None:
    """The token in ``address`` when it is LOCAL+TOKEN@DOMAIN (any case), else None."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    head, at, tail = text.rpartition("@")
    if not at or not text.isascii() or tail.lower() != domain:
        return None
    prefix = local + SEPARATOR
    if len(head) != len(prefix) + TOKEN_CHARS or head[: len(prefix)].lower() != prefix.lower():
        return None
    token = head[len(prefix) :]
    return token if _TOKEN.fullmatch(token) else None


def secrets_from_environment(environ: Mapping[str, str] | None = None) -> Secrets:
    """The return-path secrets (:data:`ENV_SECRET` or :data:`ENV_SECRET_FILE`);
    ConfigError naming the variables when neither is set, or as Secrets raises it."""
    return Secrets.from_environment(
        environ,
        variable=ENV_SECRET,
        file_variable=ENV_SECRET_FILE,
        needed_by=f"{OPTION} needs a secret to sign its addresses",
    )


@dataclass(frozen=True, slots=True)
class ReturnPath:
    """What every message's VERP envelope sender is made with: the base address
    (``--return-path``, checked) and the secrets. Pickles (for render processes); the
    secrets never show in its repr."""

    base: str
    secrets: Secrets

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", check_return_path(self.base))

    def address(self, job_id: str) -> str:
        """:func:`make_return_path` for ``job_id``."""
        return make_return_path(self.secrets, self.base, job_id)

    def read(self, address: str) -> str | None:
        """:func:`read_return_path` against this base."""
        return read_return_path(self.secrets, address, self.base)

    def owns(self, address: str) -> bool:
        """Whether ``address`` is the base or has its VERP form (LOCAL+TOKEN@DOMAIN, any
        case), whatever the token's signature: mail a listener must take in (a token no
        secret verifies is matched by Message-ID, or kept unmatched)."""
        text = address.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if text.lower() == self.base.lower():
            return True
        return _token_of(text, *split_base(self.base)) is not None
