"""One-click unsubscribe (RFC 8058, RFC 2369): signed tokens and the headers that carry them.

Every message gets ``List-Unsubscribe: <URL/TOKEN>`` and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``. Mail providers post to that URL blind (no cookie, no
login), so the token alone must say who unsubscribes from what, and must be impossible
to forge or to alter so that it names someone else.

A token is ``base64url(version + ciphertext) "." base64url(tag)``, without padding:

- the fields: the recipient's key (:mod:`mailspool.message.optout`), the list and the
  campaign, each UTF-8 and preceded by its length in one byte;
- tag: HMAC-SHA256 over a fixed label, the version byte (2) and the fields, truncated to
  16 bytes (128 bits, as RFC 2104 allows; forging one takes 2**128 guesses, each a
  request to the server);
- ciphertext: the fields encrypted with AES-256 in counter mode, the tag as its initial
  counter block (the SIV construction of RFC 5297, with HMAC-SHA256 as its PRF), under a
  key derived from the same secret. The link is opaque: it shows neither the address nor
  the list to whoever sees the URL (a proxy's log, a link scanner), and the same message
  always carries the same token.

``ann@example.com`` on list ``default`` of a 20-character campaign makes a token of 85
characters. Links of version 1 (the fields in clear, signed the same way) are still
accepted, so that messages sent before keep working.

Secrets come from the environment (:meth:`Secrets.from_environment`): several may be
given, comma-separated; the first signs, every one verifies, so a secret is rotated by
putting a new one first and removing the old one once the messages it signed no longer
matter. A secret never appears in a repr, a log or an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailspool.errors import ConfigError, MailspoolError
from mailspool.message.optout import address_key, check_list_name
from mailspool.urls import is_loopback, redact_url

ENV_SECRET = "MAILSPOOL_UNSUBSCRIBE_SECRET"
ENV_SECRET_FILE = "MAILSPOOL_UNSUBSCRIBE_SECRET_FILE"
MIN_SECRET_CHARS = 32
VERSION = 2
#: tokens whose fields are in clear (still read: messages carrying them are out there)
CLEAR_VERSION = 1
MAC_BYTES = 16
#: the list and the campaign, in UTF-8 bytes: a token stays well inside a header line
MAX_NAME_BYTES = 100
#: the base URL, so that List-Unsubscribe stays under the 998-character line limit
MAX_URL_CHARS = 300
# base64url of the longest payload (1 + 255 + 2 * 101 bytes) and of the MAC, and the dot
MAX_TOKEN_CHARS = (1 + 255 + 2 * (1 + MAX_NAME_BYTES) + 2) // 3 * 4 + 1 + 22
# the labels keep these MACs, and the encryption key, apart from any other use of the
# same secret
_LABEL = b"mailspool unsubscribe\0"
_ENCRYPTION_LABEL = b"mailspool unsubscribe encryption\0"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# what a URL inside <...> in a header may not hold
_UNSAFE_URL = re.compile(r"[^!-~]|[<>\"\\^`{|}]")

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"


class BadToken(MailspoolError):
    """A token that is forged, altered, truncated or not a token at all. It says no more,
    whatever was wrong: an attacker learns nothing from the answer."""

    def __init__(self) -> None:
        super().__init__("invalid unsubscribe token")


def secret_text(
    environ: Mapping[str, str] | None, variable: str, file_variable: str, needed_by: str
) -> tuple[str, str]:
    """The text of ``variable``, or of the file ``file_variable`` names (one of the two),
    and where it came from (for errors that never show it); ConfigError when neither or
    both are set (saying what ``needed_by`` it), or the file cannot be read. Every
    secret read from the environment (unsubscribe links, VERP, webhooks) comes this way."""
    env = os.environ if environ is None else environ
    value, path = env.get(variable, ""), env.get(file_variable, "")
    if value and path:
        raise ConfigError(f"set {variable} or {file_variable}, not both")
    if value:
        return value, variable
    if not path:
        raise ConfigError(f"{needed_by}: set {variable} or {file_variable}")
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        # the path and the OS's reason only: never the file's content
        raise ConfigError(
            f"{file_variable}: cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    return text, f"{file_variable} ({path})"


class Secrets:
    """The HMAC secrets: the first signs, all verify. Each is at least
    :data:`MIN_SECRET_CHARS` characters; they are never shown."""

    __slots__ = ("_aes", "_keys")

    def __init__(self, secrets: Sequence[str], origin: str = "unsubscribe secret") -> None:
        """``origin`` names where they came from, for errors (an environment variable or
        a file), never the secrets themselves."""
        if not secrets:
            raise ConfigError(f"{origin}: no secret given")
        for i, secret in enumerate(secrets, 1):
            if len(secret) < MIN_SECRET_CHARS:
                which = f"secret {i} of {len(secrets)}" if len(secrets) > 1 else "the secret"
                raise ConfigError(
                    f"{origin}: {which} is {len(secret)} characters long; each needs at least"
                    f" {MIN_SECRET_CHARS} (e.g. from: openssl rand -base64 32)"
                )
        # surrogateescape: an environment variable may hold bytes that are not UTF-8
        self._keys = tuple(s.encode("utf-8", "surrogateescape") for s in secrets)
        # each secret's encryption key, derived once rather than for every link
        self._aes = tuple(hmac.digest(k, _ENCRYPTION_LABEL, hashlib.sha256) for k in self._keys)

    @classmethod
    def parse(cls, text: str, origin: str) -> Secrets:
        """Comma-separated secrets; blanks around each (a file's last line end) ignored."""
        return cls([s.strip() for s in text.split(",") if s.strip()], origin)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        variable: str = ENV_SECRET,
        file_variable: str = ENV_SECRET_FILE,
        needed_by: str = "one-click unsubscribe needs a secret to sign its links",
    ) -> Secrets:
        """The secrets in ``variable``, or in the file ``file_variable`` names (one of the
        two); ConfigError when neither or both are set, or a file cannot be read.
        By default the unsubscribe secrets (:data:`ENV_SECRET`, :data:`ENV_SECRET_FILE`);
        another use names its own variables and says what ``needs`` them."""
        text, origin = secret_text(environ, variable, file_variable, needed_by)
        return cls.parse(text, origin)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<Secrets: {len(self._keys)} hidden>"

    __str__ = __repr__

    def seal(self, payload: bytes) -> tuple[bytes, bytes]:
        """(ciphertext, tag) of ``payload`` (the version byte, then the fields) under the
        first secret."""
        tag = _mac(self._keys[0], payload)
        return _ctr(self._aes[0], tag, payload[1:]), tag

    def unseal(self, version: bytes, ciphertext: bytes, tag: bytes) -> bytes | None:
        """The fields sealed as ``ciphertext`` and ``tag`` by any secret, else None. Every
        secret is tried, each comparison constant-time, so the time taken says nothing
        about the tag or which secret made it."""
        found = None
        for key, aes_key in zip(self._keys, self._aes, strict=True):
            fields = _ctr(aes_key, tag, ciphertext)
            if hmac.compare_digest(_mac(key, version + fields), tag):
                found = fields
        return found

    def tag(self, label: bytes, payload: bytes, size: int) -> bytes:
        """HMAC-SHA256 over ``label`` and ``payload`` under the first secret, truncated
        to ``size`` bytes: for other signed values than unsubscribe links (each with a
        label of its own, so that no MAC made for one use is valid for another)."""
        return hmac.digest(self._keys[0], label + payload, hashlib.sha256)[:size]

    def check(self, label: bytes, payload: bytes, tag: bytes) -> bool:
        """Whether any secret made ``tag`` (:meth:`tag`, same size) over ``label`` and
        ``payload``: every secret is tried, each comparison constant-time."""
        ok = False
        for key in self._keys:
            mac = hmac.digest(key, label + payload, hashlib.sha256)[: len(tag)]
            ok |= hmac.compare_digest(mac, tag)
        return ok and len(tag) > 0

    def verify(self, payload: bytes, mac: bytes) -> bool:
        """Whether any secret made ``mac`` over ``payload`` in clear (version 1 tokens),
        tried as :meth:`unseal` tries them."""
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(_mac(key, payload), mac)
        return ok


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, _LABEL + payload, hashlib.sha256)[:MAC_BYTES]


def _ctr(aes_key: bytes, tag: bytes, data: bytes) -> bytes:
    """AES-256-CTR of ``data`` from the counter block ``tag`` under ``aes_key`` (derived
    from a secret, see Secrets); its own inverse."""
    # imported here: every `send` imports this module, and most campaigns have no links
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(aes_key), modes.CTR(tag))
    return cipher.encryptor().update(data)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """What a valid token names: the recipient's key, the list, the campaign."""

    address: str
    list_name: str
    campaign: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: the alphabet only, and the one canonical spelling of the bytes (the last
    character's spare bits zero), so that no two tokens carry the same bytes."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise BadToken
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise BadToken from None
    if _b64(data) != text:
        raise BadToken
    return data


def _field(value: str, what: str, limit: int) -> bytes:
    data = value.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"the {what} is too long for an unsubscribe token ({limit} bytes max)")
    return bytes([len(data)]) + data


def make_token(secrets: Secrets, address: str, list_name: str, campaign: str) -> str:
    """A token naming ``address`` (normalised as the suppression list compares it) on
    ``list_name``, for ``campaign``. ValueError for an invalid address or list name
    (:func:`~mailspool.message.optout.check_list_name`), or a campaign name longer than
    :data:`MAX_NAME_BYTES` bytes."""
    version = bytes([VERSION])
    fields = (
        _field(address_key(address), "address", 255)
        + _field(check_list_name(list_name), "list name", MAX_NAME_BYTES)
        + _field(campaign, "campaign name", MAX_NAME_BYTES)
    )
    ciphertext, tag = secrets.seal(version + fields)
    return f"{_b64(version + ciphertext)}.{_b64(tag)}"


def read_token(secrets: Secrets, token: str) -> Unsubscribe:
    """What ``token`` names, when one of ``secrets`` signed it exactly; BadToken for
    anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        raise BadToken
    body, dot, mac = token.partition(".")
    if not dot:
        raise BadToken
    payload, tag = _unb64(body), _unb64(mac)
    if len(tag) != MAC_BYTES or not payload:
        raise BadToken
    version = payload[:1]
    if version == bytes([VERSION]):
        opened = secrets.unseal(version, payload[1:], tag)
        if opened is None:
            raise BadToken
        return _parse_fields(opened)
    if version == bytes([CLEAR_VERSION]) and secrets.verify(payload, tag):
        return _parse_fields(payload[1:])
    raise BadToken


def _parse_fields(payload: bytes) -> Unsubscribe:
    """The three length-prefixed fields (signed by us: a payload that does not parse is
    one a newer version wrote)."""
    fields: list[str] = []
    at = 0
    for _ in range(3):
        if at >= len(payload) or at + 1 + payload[at] > len(payload):
            raise BadToken
        end = at + 1 + payload[at]
        try:
            fields.append(payload[at + 1 : end].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadToken from None
        at = end
    if at != len(payload):
        raise BadToken
    return Unsubscribe(*fields)


def check_unsubscribe_url(url: str) -> str:
    """The base URL of ``--unsubscribe-url`` (a trailing ``/`` removed), or ConfigError:
    https (plain http only to a loopback host, for tests), a host, no user or password
    (it goes into every message), no query string or fragment (the token is appended to
    the path as ``/TOKEN``), printable ASCII that needs no escaping inside ``<...>``."""
    shown = redact_url(url)
    if len(url) > MAX_URL_CHARS:
        raise ConfigError(f"--unsubscribe-url: longer than {MAX_URL_CHARS} characters")
    if _UNSAFE_URL.search(url):
        raise ConfigError(
            f"--unsubscribe-url {shown!r}: spaces, quotes, <>, non-ASCII characters and the"
            " like are not allowed (write an international domain in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as exc:
        raise ConfigError(f"--unsubscribe-url {shown!r}: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not host:
        raise ConfigError(f"--unsubscribe-url {shown!r}: needs https://HOST/PATH")
    if scheme != "https" and not (scheme == "http" and is_loopback(host)):
        raise ConfigError(
            f"--unsubscribe-url {shown!r}: must be https (mail providers require it;"
            " plain http is allowed to a loopback host only)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"--unsubscribe-url {shown!r}: no user or password: the URL is in every message"
        )
    if "?" in url or "#" in url:
        raise ConfigError(
            f"--unsubscribe-url {shown!r}: no query string or fragment: the token is"
            " appended to the path (URL/TOKEN)"
        )
    return url.rstrip("/")


def unsubscribe_url(base_url: str, token: str) -> str:
    """The recipient's unsubscribe URL (``base_url`` checked by check_unsubscribe_url)."""
    return f"{base_url}/{token}"


#: the template variable holding the recipient's unsubscribe URL (with --unsubscribe-url)
TEMPLATE_VARIABLE = "unsubscribe_url"
#: what the variable holds while a row renders (the recipient, and so the token, is known
#: only once the row is rendered); replaced by the URL in the rendered message. Letters,
#: digits and URL punctuation only: HTML escaping leaves it as it is.
PLACEHOLDER = "https://unsubscribe.invalid/mailspool-unsubscribe-url-3f9a1c7e"


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """What every message's one-click unsubscribe link is made with: the base URL
    (``--unsubscribe-url``, checked) and the secrets. Pickles (for render processes);
    the secrets never show in its repr."""

    base_url: str
    secrets: Secrets

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_unsubscribe_url(self.base_url))

    def token(self, address: str, list_name: str, campaign: str) -> str:
        """:func:`make_token` with these secrets (ValueError as it raises it)."""
        return make_token(self.secrets, address, list_name, campaign)


def list_unsubscribe_headers(base_url: str, token: str) -> list[tuple[str, str]]:
    """The RFC 2369 and RFC 8058 headers for one recipient."""
    return [
        (LIST_UNSUBSCRIBE, f"<{unsubscribe_url(base_url, token)}>"),
        (LIST_UNSUBSCRIBE_POST, ONE_CLICK),
    ]
