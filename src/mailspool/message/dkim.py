"""DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

``Signer(keys).sign(message)`` returns the ``DKIM-Signature`` header lines to put in
front of the message: one per key whose domain is the From address's domain (aligned
for DMARC), so an RSA and an Ed25519 key for one domain give two signatures, and
nothing when no key matches (the message goes out unsigned).

dkimpy parses the message, canonicalises it (relaxed/relaxed) and picks the signed
header instances; the hash is signed with ``cryptography`` (OpenSSL) rather than with
dkimpy's own RSA, which is pure Python: every message is signed once at enqueue, and
``dkim.sign`` takes about 6 ms a message with a 2048-bit key where this takes 0.4 ms
(0.2 ms with Ed25519). Both verifiers in the tests, dkimpy and Perl's Mail::DKIM, check
what this produces.

What a signature covers, and so what must not change between signing and the wire (a
retry hours later or on another worker still has to verify, and there is no ``x=`` by
default): the whole body, byte for byte up to relaxed whitespace, and the header fields
in :data:`SIGNED_HEADERS` that are present, From once more than present (so that no
second From can be added). Other header fields (Received, Return-Path, a relay's own)
may be added; the signature lines must be put in front of the message unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable
from email.utils import getaddresses

from mailspool.message.addresses import normalize_domain
from mailspool.message.dkim_keys import DKIMKey

#: header fields signed when present, in the message's own order
SIGNED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "reply-to",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "feedback-id",
    }
)
#: signed once more than present, so that another instance cannot be added
OVERSIGNED = ("from",)
# folded lines stay within the 78 characters RFC 5322 recommends
_WIDTH = 76
_NAME = "DKIM-Signature"


class Signer:
    """Signs messages with every key whose domain is the From address's domain.

    Pickles with its keys (for render processes started with "spawn")."""

    def __init__(self, keys: Iterable[DKIMKey], *, expire_after: int | None = None) -> None:
        """``expire_after`` seconds adds ``x=`` (none by default: a message retried
        later must still verify)."""
        self.keys = tuple(keys)
        self.expire_after = expire_after
        self._by_domain: dict[str, list[DKIMKey]] = {}
        for key in self.keys:
            self._by_domain.setdefault(key.domain, []).append(key)

    @property
    def domains(self) -> frozenset[str]:
        """The domains there are keys for (IDNA A-labels, lowercase)."""
        return frozenset(self._by_domain)

    def has_key_for(self, domain: str) -> bool:
        """Whether a message from this domain (any case, Unicode or IDNA) gets signed."""
        try:
            return normalize_domain(domain) in self._by_domain
        except ValueError:
            return False

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """The DKIM-Signature header lines (CRLF-terminated, folded) to put in front of
        ``message``, the final bytes as they will be sent; b"" when no key is for the
        From domain. ``timestamp`` is the ``t=`` tag (default: now). Raises ValueError
        for a message without exactly one From header field, or unparsable."""
        import dkim  # here, not at the top: it loads a DNS resolver, slow to import
        from dkim.canonicalization import Relaxed

        try:
            headers, body = parse(message)
        except dkim.MessageFormatError as exc:
            raise ValueError(f"cannot sign: {exc}") from None
        except IndexError:  # dkimpy's word for it
            raise ValueError("cannot sign: the header starts with a continuation line") from None
        keys = self._by_domain.get(_from_domain(headers) or "", ())
        if not keys:
            return b""
        names = [n.decode("ascii").lower() for n, _ in headers]
        include = [n for n in names if n in SIGNED_HEADERS] + list(OVERSIGNED)
        canonical = Relaxed.canonicalize_headers(headers)
        hashed = b"".join(
            name + b":" + value
            for name, value in dkim.select_headers(canonical, [n.encode() for n in include])
        )
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest())
        now = int(time.time()) if timestamp is None else timestamp
        out = []
        for key in keys:
            tags = [
                ("v", "1"),
                ("a", key.signature_algorithm),
                ("c", "relaxed/relaxed"),
                ("d", key.domain),
                ("s", key.selector),
                ("t", str(now)),
                *([("x", str(now + self.expire_after))] if self.expire_after else []),
                ("h", ":".join(include)),
                ("bh", body_hash.decode("ascii")),
            ]
            unsigned = _fold(tags)
            # the signature header itself is hashed with b= empty and no final CRLF
            ((_, value),) = Relaxed.canonicalize_headers([(b"", unsigned.encode("ascii"))])
            signature = key.sign(hashed + b"dkim-signature:" + value.rstrip(b"\r\n"))
            out.append(f"{_NAME}:{unsigned}{_fold_b(signature)}\r\n".encode("ascii"))
        return b"".join(out)


def parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """(header fields, body) as ``dkim.rfc822_parse`` gives them. That splits and joins
    every line of the message in Python; for the usual CRLF message only the header block
    goes through it, the body is sliced off as it is (10 times faster on large messages)."""
    import dkim  # see Signer.sign

    end = message.find(b"\r\n\r\n")
    # (a message starting with an empty line has no header fields, and its body may hold
    # an empty line of its own)
    fast = end >= 0 and not message.startswith(b"\r\n")
    if fast and message.count(b"\n") == message.count(b"\r\n"):
        headers, _ = dkim.rfc822_parse(message[: end + 2])
        return headers, message[end + 4 :]
    return dkim.rfc822_parse(message)  # type: ignore[no-any-return]


def canonical_body(body: bytes) -> bytes:
    """The relaxed canonical body (RFC 6376 section 3.4.4) as dkimpy computes it. Its
    regular expressions scan every byte; a body without tabs or double spaces (base64
    attachments, most text) only loses its empty lines at the end and the one space that
    may end a line (as the "-- " signature separator does)."""
    from dkim.canonicalization import Relaxed  # see Signer.sign

    if b"\t" in body or b"  " in body or not body.endswith(b"\r\n"):
        return Relaxed.canonicalize_body(body)  # type: ignore[no-any-return]
    if b" \r\n" in body:  # no double spaces: a line ends in one space at most
        body = body.replace(b" \r\n", b"\r\n")
    text = body.rstrip(b"\r\n")
    tail = body[len(text) :]
    if tail != b"\r\n" * (len(tail) // 2):  # a bare CR or LF among the final line ends
        return Relaxed.canonicalize_body(body)  # type: ignore[no-any-return]
    return text + b"\r\n" if text else b""


def _from_domain(headers: list[list[bytes]]) -> str | None:
    """The From address's domain, normalised; None if there is not exactly one address.
    ValueError when there is not exactly one From header field (RFC 5322: exactly one;
    DMARC receivers reject a message with two)."""
    values = [v for n, v in headers if n.lower() == b"from"]
    if len(values) != 1:
        raise ValueError(f"cannot sign a message with {len(values)} From header fields")
    text = values[0].decode("utf-8", "replace").replace("\r\n", "")
    addresses = [a for _, a in getaddresses([text]) if a]
    if len(addresses) != 1:
        return None
    domain = addresses[0].rpartition("@")[2]
    try:
        return normalize_domain(domain)
    except ValueError:
        return None


def _fold(tags: list[tuple[str, str]]) -> str:
    """The header value up to an empty ``b=``, folded where whitespace may stand: between
    tags, and around the colons of ``h=`` (RFC 6376 section 3.5)."""
    words: list[tuple[str, bool]] = []  # (text, whether a space stands before it)
    for name, value in tags:
        if name == "h" and len(value) > _WIDTH - 10:
            parts = value.split(":")
            words.append((f"h={parts[0]}:", True))
            words += [(p + ":", False) for p in parts[1:-1]]
            words.append((parts[-1] + ";", False))
        else:
            words.append((f"{name}={value};", True))
    lines: list[str] = []
    line = ""
    used = len(_NAME) + 1
    for text, spaced in words:
        sep = " " if spaced else ""
        if line and used + len(line) + len(sep) + len(text) > _WIDTH:
            lines.append(line)
            line, used = text, 1
        else:
            line += sep + text
    lines.append(line)
    return "\r\n ".join(lines) + "\r\n b="


def _fold_b(signature: bytes) -> str:
    """The ``b=`` value, folded: whitespace in it is ignored by verifiers."""
    text = base64.b64encode(signature).decode("ascii")
    first = _WIDTH - 3
    chunks = [text[:first]] + [
        text[i : i + _WIDTH - 1] for i in range(first, len(text), _WIDTH - 1)
    ]
    return "\r\n ".join(c for c in chunks if c)
