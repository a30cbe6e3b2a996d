"""Dashboard sessions: a random id in an HttpOnly, SameSite=Strict cookie, the session
itself kept in this process, with its CSRF token (the synchronizer token pattern).

- Signing in with an API token (dashboard/pages.py) ends the session that showed the
  form and starts a new one: a new id and a new CSRF token (no fixation).
- Every request that changes something carries the session's CSRF token (the form's
  ``csrf`` field, or the ``X-CSRF-Token`` header that the dashboard's script sends),
  compared in constant time; without it: 403.
- Signing out forgets the session here: its cookie is worthless from then on.
- Only a digest of each id is kept, so the table itself holds nothing a cookie can be
  made from.

The sessions live in this process: a restart signs everyone out, and several ``serve``
processes behind one address need sticky sessions. A session ends after
:data:`IDLE_S` without a request or :data:`LIFETIME_S` after signing in. Those not signed
in (a login form shown) are kept apart and fewer, so that no one without a token can
push a signed-in session out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "mailspool_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
#: methods that change nothing: no CSRF token needed
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDLE_S = 8 * 3600.0
LIFETIME_S = 24 * 3600.0
#: a login form's session lasts this long
ANONYMOUS_S = 3600.0
MAX_SIGNED_IN = 10_000
MAX_ANONYMOUS = 1_000


@dataclass(slots=True)
class Session:
    """One browser's session: ``csrf`` is its synchronizer token; ``signed_in`` false for
    the session of a login form."""

    csrf: str
    signed_in: bool
    created: float
    seen: float = field(default=0.0)

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.csrf.encode()
        )


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """The sessions of this process, least recently used first (the first dropped)."""

    def __init__(
        self,
        *,
        idle: float = IDLE_S,
        lifetime: float = LIFETIME_S,
        max_signed_in: int = MAX_SIGNED_IN,
        max_anonymous: int = MAX_ANONYMOUS,
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._tables: dict[bool, OrderedDict[bytes, Session]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }
        self._caps = {True: max_signed_in, False: max_anonymous}

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def start(self, signed_in: bool, now: float | None = None) -> tuple[str, Session]:
        """A new session and the id for its cookie."""
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), signed_in, now, now)
        table = self._tables[signed_in]
        table[_digest(session_id)] = session
        while len(table) > self._caps[signed_in]:
            table.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float | None = None) -> Session | None:
        """The live session of this id (its use noted), or None."""
        if not session_id:
            return None
        now = time.time() if now is None else now
        key = _digest(session_id)
        for signed_in, table in self._tables.items():
            session = table.get(key)
            if session is None:
                continue
            lifetime = self.lifetime if signed_in else ANONYMOUS_S
            if now - session.seen > self.idle or now - session.created > lifetime:
                del table[key]
                return None
            session.seen = now
            table.move_to_end(key)
            return session
        return None

    def end(self, session_id: str | None) -> None:
        if session_id:
            key = _digest(session_id)
            for table in self._tables.values():
                table.pop(key, None)

    def of(self, request: Request) -> Session | None:
        return self.get(request.cookies.get(COOKIE))


def over_tls(request: Request) -> bool:
    """Whether the browser reached us over TLS: the connection's scheme, which uvicorn
    takes from X-Forwarded-Proto when the proxy is one it trusts (FORWARDED_ALLOW_IPS)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, session_id: str) -> None:
    """The session cookie: not for scripts, never sent from another site, Secure over TLS;
    no expiry (the browser forgets it when it closes; the server ends it sooner)."""
    response.set_cookie(
        COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=over_tls(request)
    )
