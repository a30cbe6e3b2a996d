"""DKIM keys: generating them, the DNS record to publish, and loading them at start.

Two algorithms: RSA (``rsa-sha256``, RFC 6376; 2048 bits recommended, 1024 the least
allowed, 4096 the most every verifier must support, RFC 8301) and Ed25519
(``ed25519-sha256``, RFC 8463).

Key files are written in the forms dkimpy (and dkimpy-milter) read, so a key made here
also works there and the reverse:

* RSA: PEM, PKCS#1 (``-----BEGIN RSA PRIVATE KEY-----``), as ``openssl genrsa`` and
  ``opendkim-genkey`` write it. PKCS#8 PEM (``BEGIN PRIVATE KEY``) loads too.
* Ed25519: one line, the base64 of the raw 32-byte private seed, which is what dkimpy's
  ``dknewkey`` writes and ``dkim.sign(..., signature_algorithm=b"ed25519-sha256")`` takes
  (``nacl.signing.SigningKey(seed, encoder=Base64Encoder)``). An Ed25519 PKCS#8 PEM, as
  ``openssl genpkey -algorithm ed25519`` writes it, loads too.

A key file is checked when it is loaded, at start: whatever is wrong with it raises
:class:`~mailspool.errors.ConfigError` naming the file, so a run never stops half-way for
a key. Private keys are never printed, logged or put in an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from mailspool.errors import ConfigError
from mailspool.message.addresses import normalize_domain

Algorithm = Literal["rsa", "ed25519"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa", "ed25519")
MIN_RSA_BITS = 1024
RECOMMENDED_RSA_BITS = 2048
MAX_RSA_BITS = 4096
#: a key file is a few kilobytes at most; anything larger is not one
MAX_KEY_FILE = 64 * 1024
#: the most a TXT record's character-string holds (RFC 1035 section 3.3.14)
MAX_TXT_STRING = 255

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
# a selector is one or more DNS labels (RFC 6376 section 3.1)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NO_ENCRYPTION = serialization.NoEncryption()
_OTHER_KINDS: tuple[tuple[type, str], ...] = (
    (ec.EllipticCurvePrivateKey, "EC"),
    (dsa.DSAPrivateKey, "DSA"),
    (ed448.Ed448PrivateKey, "Ed448"),
)

log = logging.getLogger("mailspool.dkim")


def check_selector(selector: str) -> str:
    """The selector, lowercase, if it is one or more DNS labels; else ConfigError."""
    if len(selector) > 200 or not _SELECTOR.match(selector):
        raise ConfigError(f"DKIM selector {selector!r} is not a DNS label (letters, digits, -)")
    return selector.lower()


def check_domain(domain: str) -> str:
    """The domain as DKIM's ``d=`` and DNS take it (IDNA A-labels, lowercase), compared
    the same way as From addresses are (mailspool.message.addresses); else ConfigError."""
    try:
        return normalize_domain(domain)
    except ValueError as exc:
        why = str(exc).replace("The part after the @-sign", "it")  # email-validator's words
        raise ConfigError(f"DKIM domain {domain!r} is not a valid domain name: {why}") from None


def weak_key_note(bits: int) -> str | None:
    """Why an RSA key of this size is weak but allowed, or None."""
    if bits < RECOMMENDED_RSA_BITS:
        return (
            f"an RSA key of {bits} bits is weak: use {RECOMMENDED_RSA_BITS} bits"
            " (some receivers already treat 1024-bit signatures as weak)"
        )
    return None


def txt_strings(value: str) -> list[str]:
    """A TXT value as the character-strings of a record, none longer than 255 characters:
    the tags before ``p=`` in one, then ``p=`` and the key in as many as it takes."""
    if len(value) <= MAX_TXT_STRING:
        return [value]
    head, sep, key = value.partition("p=")
    rest = sep + key
    chunks = [rest[i : i + MAX_TXT_STRING] for i in range(0, len(rest), MAX_TXT_STRING)]
    return [head, *chunks] if head else chunks


def dns_record(selector: str, domain: str, value: str) -> str:
    """The zone-file line to publish, e.g.
    ``s1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; " "p=MIIBIjAN..." "...AQAB"``.

    How that is read: one TXT record may hold several quoted character-strings of at most
    255 characters each, and a DKIM verifier joins them with nothing in between (RFC 6376
    section 3.6.2.2), so the line above means ``v=DKIM1; k=rsa; p=MIIBIjAN......AQAB``.
    A zone file (BIND, NSD, Knot) takes the line as printed; a DNS provider's web form
    usually wants the joined value and splits it itself."""
    quoted = " ".join(f'"{part}"' for part in txt_strings(value))
    return f"{selector}._domainkey.{domain}. IN TXT {quoted}"


@dataclass(frozen=True, slots=True)
class DKIMKey:
    """One signing key: the ``d=`` domain and ``s=`` selector it signs as, and the key."""

    domain: str
    selector: str
    path: Path
    algorithm: Algorithm
    private: PrivateKey = field(repr=False, compare=False)

    @classmethod
    def load(cls, domain: str, selector: str, path: Path | str) -> DKIMKey:
        """Read and check a key file; ConfigError naming the file when it is missing,
        unreadable, not a private key, of another type, too short or damaged."""
        path = Path(path)
        domain, selector = check_domain(domain), check_selector(selector)
        key = _read_key(path)
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise ConfigError(
                    f"DKIM key file {path}: an RSA key of {key.key_size} bits is too short"
                    f" (at least {MIN_RSA_BITS}, RFC 8301)"
                )
            if (note := weak_key_note(key.key_size)) is not None:
                log.warning("DKIM key file %s: %s", path, note)
            return cls(domain, selector, path, "rsa", key)
        return cls(domain, selector, path, "ed25519", key)

    @property
    def signature_algorithm(self) -> str:
        """The ``a=`` tag."""
        return "rsa-sha256" if self.algorithm == "rsa" else "ed25519-sha256"

    @property
    def bits(self) -> int:
        return self.private.key_size if isinstance(self.private, rsa.RSAPrivateKey) else 256

    @property
    def public_key(self) -> str:
        """The ``p=`` value: base64 of the DER SubjectPublicKeyInfo for RSA, of the raw
        32-byte public key for Ed25519 (RFC 8463 section 4.2)."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return base64.b64encode(der).decode("ascii")
        return base64.b64encode(public.public_bytes_raw()).decode("ascii")

    @property
    def txt_value(self) -> str:
        """The TXT record's value, joined: ``v=DKIM1; k=rsa; p=...``."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"

    @property
    def dns_record(self) -> str:
        """The zone-file line to publish (see :func:`dns_record`)."""
        return dns_record(self.selector, self.domain, self.txt_value)

    def sign(self, data: bytes) -> bytes:
        """The ``b=`` signature of the canonical header data: RSASSA-PKCS1-v1_5 over its
        SHA-256 for RSA; for Ed25519, PureEdDSA over its SHA-256 digest (RFC 8463
        section 3: the hash, not the data, is what Ed25519 signs)."""
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(hashlib.sha256(data).digest())

    def __reduce__(self) -> tuple[Any, ...]:
        # the render processes are started with "spawn" and take the signer pickled; the
        # key goes with it (in PKCS#8) so that a child never reads the file mid-run
        der = self.private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, _NO_ENCRYPTION
        )
        return (_restore, (self.domain, self.selector, str(self.path), self.algorithm, der))


def _restore(domain: str, selector: str, path: str, algorithm: Algorithm, der: bytes) -> DKIMKey:
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return DKIMKey(domain, selector, Path(path), algorithm, key)


def _read_bytes(path: Path) -> bytes:
    where = f"DKIM key file {path}"
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory, not a key file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: is not a regular file")
        if st.st_size > MAX_KEY_FILE:
            raise ConfigError(f"{where}: {st.st_size} bytes is too large for a key file")
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: not found") from None
    except PermissionError:
        raise ConfigError(f"{where}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if st.st_mode & 0o077:
        log.warning("%s: readable by other users (mode %o): chmod 600", where, st.st_mode & 0o777)
    return data


def _read_key(path: Path) -> PrivateKey:
    data = _read_bytes(path)
    where = f"DKIM key file {path}"
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        return _pem_key(where, text)
    try:
        raw = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:  # dkimpy's form of an Ed25519 key: the base64 seed
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    if len(raw) == 64:  # libsodium's (rspamd's): the seed, then the public key
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        if key.public_key().public_bytes_raw() != raw[32:]:
            raise ConfigError(f"{where}: its public half does not match its private half")
        return key
    if text.startswith(b"v=DKIM1") or _is_public_der(raw):
        raise ConfigError(f"{where}: holds a public key (the DNS record's), not the private key")
    raise ConfigError(
        f"{where}: is not a DKIM private key (expected a PEM RSA or Ed25519 key,"
        " or a base64 Ed25519 seed as dkimpy or rspamd write it)"
    )


def _pem_key(where: str, text: bytes) -> PrivateKey:
    first = text.split(b"\n", 1)[0]
    if b"PUBLIC KEY" in first:
        raise ConfigError(f"{where}: holds a public key, not the private key")
    if b"CERTIFICATE" in first:
        raise ConfigError(f"{where}: holds a certificate, not a private key")
    if b"ENCRYPTED" in first:
        raise ConfigError(f"{where}: the key is encrypted; DKIM signing needs it unencrypted")
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except TypeError:  # another form of encryption (Proc-Type: 4,ENCRYPTED)
        raise ConfigError(
            f"{where}: the key is encrypted; DKIM signing needs it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # cryptography checks an RSA key's halves against each other: a key whose public
        # half does not match its private half lands here too
        raise ConfigError(f"{where}: is not a valid private key (damaged or mismatched)") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        kind = next((n for t, n in _OTHER_KINDS if isinstance(key, t)), type(key).__name__)
        raise ConfigError(f"{where}: {kind} keys cannot sign DKIM: use rsa or ed25519")
    return key


def _is_public_der(raw: bytes) -> bool:
    if not raw:
        return False
    try:
        serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def parse_dkim_spec(spec: str) -> tuple[str, str, Path]:
    """``DOMAIN:SELECTOR:KEYFILE`` as (domain, selector, path), the domain and selector
    checked (the path may itself hold colons); else ConfigError."""
    domain, sep1, rest = spec.partition(":")
    selector, sep2, keyfile = rest.partition(":")
    if not (sep1 and sep2 and domain.strip() and selector.strip() and keyfile.strip()):
        raise ConfigError(f"--dkim {spec!r}: expected DOMAIN:SELECTOR:KEYFILE")
    return (
        check_domain(domain.strip()),
        check_selector(selector.strip()),
        Path(keyfile.strip()).expanduser(),
    )


def load_keys(specs: Iterable[str]) -> tuple[DKIMKey, ...]:
    """Every ``DOMAIN:SELECTOR:KEYFILE`` loaded and checked, at start. A spec given twice
    with the same key counts once; two different keys for one domain and selector (one
    DNS record can only hold one of them) raise ConfigError naming both files."""
    keys: dict[tuple[str, str], DKIMKey] = {}
    for spec in specs:
        key = DKIMKey.load(*parse_dkim_spec(spec))
        seen = keys.get((key.domain, key.selector))
        if seen is None:
            keys[(key.domain, key.selector)] = key
        elif seen.public_key != key.public_key:
            raise ConfigError(
                f"DKIM key file {key.path}: selector {key.selector} of {key.domain} already"
                f" has another key, {seen.path}: one DNS record holds one key"
            )
    return tuple(keys.values())


def generate_key(
    domain: str,
    selector: str,
    algorithm: str = "rsa",
    bits: int = RECOMMENDED_RSA_BITS,
    out_dir: Path | str = ".",
) -> tuple[Path, str]:
    """Make a key pair, write the private key to ``OUT_DIR/DOMAIN.SELECTOR.key`` (mode
    0600 from its creation; an existing file is never overwritten) and return its path
    and the DNS record to publish (:func:`dns_record`). The key itself is never returned
    or printed. RSA below 2048 bits is logged as weak; below 1024 refused."""
    domain, selector = check_domain(domain), check_selector(selector)
    private: PrivateKey
    if algorithm == "rsa":
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise ConfigError(
                f"RSA DKIM keys have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {bits}"
                f" ({RECOMMENDED_RSA_BITS} recommended)"
            )
        if (note := weak_key_note(bits)) is not None:
            log.warning("DKIM key for %s: %s", domain, note)
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        data = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            _NO_ENCRYPTION,
        )
    elif algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        data = base64.b64encode(private.private_bytes_raw()) + b"\n"
    else:
        raise ConfigError(f"DKIM algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")
    out = Path(out_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = out / f"{domain}.{selector}.key"
    _write_private(path, data)
    key = DKIMKey(domain, selector, path, "rsa" if algorithm == "rsa" else "ed25519", private)
    return path, key.dns_record


def _write_private(path: Path, data: bytes) -> None:
    # created 0600 in one step (O_EXCL: never through an existing file or symlink), so the
    # key is not readable by others at any moment; fchmod in case the umask took bits off
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ConfigError(f"DKIM key file {path}: already exists (not overwritten)") from None
    except OSError as exc:
        raise ConfigError(f"DKIM key file {path}: cannot be created ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
