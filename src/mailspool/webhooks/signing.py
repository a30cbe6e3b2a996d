"""Signing webhook requests as the Standard Webhooks specification says
(https://www.standardwebhooks.com): each request carries ``webhook-id`` (the event's id,
the same on every attempt), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature``: ``v1,`` then the base64 of HMAC-SHA256 over
``{id}.{timestamp}.{body}``, keyed with the bytes of a ``whsec_`` secret (base64 after
the prefix).

The secrets come from ``MAILSPOOL_WEBHOOK_SECRET`` or the file named by
``MAILSPOOL_WEBHOOK_SECRET_FILE``; several, comma-separated, sign each request once each
(space-separated signatures, as the specification allows), so that a receiver can move
to a new secret without a gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from mailspool.errors import ConfigError
from mailspool.message.unsubscribe import secret_text

__all__ = ["ENV_SECRET", "ENV_SECRET_FILE", "WebhookSecrets"]

ENV_SECRET = "MAILSPOOL_WEBHOOK_SECRET"
ENV_SECRET_FILE = "MAILSPOOL_WEBHOOK_SECRET_FILE"
PREFIX = "whsec_"
#: the specification asks for keys of 24 to 64 bytes
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class WebhookSecrets:
    """The signing keys; never shown (repr and str hide them)."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str], origin: str) -> None:
        if not secrets:
            raise ConfigError(f"{origin}: no secret given")
        keys = []
        for i, secret in enumerate(secrets, 1):
            which = f"secret {i} of {len(secrets)}" if len(secrets) > 1 else "the secret"
            if not secret.startswith(PREFIX):
                raise ConfigError(f"{origin}: {which} does not start with {PREFIX}")
            try:
                key = base64.b64decode(secret[len(PREFIX) :], validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{origin}: {which} is not base64 after {PREFIX}") from None
            if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
                raise ConfigError(
                    f"{origin}: {which} holds {len(key)} bytes; use {MIN_KEY_BYTES} to"
                    f" {MAX_KEY_BYTES} (e.g. whsec_$(openssl rand -base64 32))"
                )
            keys.append(key)
        self._keys = tuple(keys)

    @classmethod
    def parse(cls, text: str, origin: str) -> WebhookSecrets:
        return cls([s.strip() for s in text.split(",") if s.strip()], origin)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> WebhookSecrets:
        """The secrets of :data:`ENV_SECRET` or of the file :data:`ENV_SECRET_FILE` names;
        ConfigError when neither or both are set, or the file cannot be read."""
        text, origin = secret_text(
            environ,
            ENV_SECRET,
            ENV_SECRET_FILE,
            "webhooks are signed (a secret is whsec_ and then, e.g., the output of"
            " openssl rand -base64 32)",
        )
        return cls.parse(text, origin)

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header's value: one ``v1,`` signature per secret."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        return " ".join(
            "v1," + base64.b64encode(hmac.digest(k, signed, hashlib.sha256)).decode()
            for k in self._keys
        )

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }

    def __repr__(self) -> str:
        return f"<WebhookSecrets: {len(self._keys)} hidden>"

    __str__ = __repr__
