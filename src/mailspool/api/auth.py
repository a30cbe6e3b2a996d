"""Bearer tokens: from MAILSPOOL_API_TOKENS (comma-separated) and the file named by
MAILSPOOL_API_TOKENS_FILE (one or more per line, ``#`` comments), compared in constant time.

The dashboard's session cookie (sessions.py: signed in with one of these tokens) is taken
in their place, with its CSRF token on every request that changes something."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailspool.api.sessions import CSRF_HEADER, SAFE_METHODS, Sessions
from mailspool.errors import ConfigError

MIN_TOKEN_LENGTH = 16
BEARER = HTTPBearer(auto_error=False, description="a token from MAILSPOOL_API_TOKENS")


class Tokens:
    """Known tokens, kept as SHA-256 digests: every check compares equal-length digests
    against every token, so its time does not depend on where a guess goes wrong."""

    def __init__(self, tokens: Sequence[str]) -> None:
        clean = [t.strip() for t in tokens if t.strip()]
        if not clean:
            raise ConfigError(
                "mailspool serve needs API tokens: set MAILSPOOL_API_TOKENS (comma-separated)"
                " or MAILSPOOL_API_TOKENS_FILE"
            )
        if any(len(t) < MIN_TOKEN_LENGTH for t in clean):
            raise ConfigError(f"every API token must be at least {MIN_TOKEN_LENGTH} characters")
        self._digests = [hashlib.sha256(t.encode()).digest() for t in clean]

    def __repr__(self) -> str:
        return f"Tokens({len(self._digests)} tokens)"

    def check(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(digest, known)
        return ok

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Tokens:
        env = os.environ if environ is None else environ
        tokens = env.get("MAILSPOOL_API_TOKENS", "").split(",")
        path = env.get("MAILSPOOL_API_TOKENS_FILE")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise ConfigError(
                    f"MAILSPOOL_API_TOKENS_FILE: cannot read {path}: {reason}"
                ) from None
            for line in text.splitlines():
                if not line.strip().startswith("#"):
                    tokens.extend(line.split(","))
        return cls(tokens)


async def authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """A route dependency: 401 unless the request carries a known bearer token, or the
    cookie of a signed-in dashboard session; 403 for such a session's request that
    changes something without the session's CSRF token. A browser never sends a bearer
    token by itself, so only the cookie needs the CSRF token."""
    tokens: Tokens = request.app.state.tokens
    if credentials is not None:
        if tokens.check(credentials.credentials):
            return
    else:
        sessions: Sessions = request.app.state.sessions
        session = sessions.of(request)
        if session is not None and session.signed_in:
            if request.method in SAFE_METHODS or session.csrf_ok(request.headers.get(CSRF_HEADER)):
                return
            raise HTTPException(403, "missing or invalid CSRF token")
    raise HTTPException(
        401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
    )
