"""OAuth2 for tests: a token endpoint on loopback (RFC 6749 section 6, the refresh-token
grant) that issues short-lived access tokens and says whether one is valid, and the
server side of the SASL mechanisms XOAUTH2 and OAUTHBEARER (RFC 7628) for the recording
SMTP server (``RecordingSMTPServer(oauth2=issuer.valid)``)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TokenIssuer", "sasl_oauth2"]

#: the error challenge a server sends for a refused token (RFC 7628 section 3.2.2)
_ERROR = json.dumps({"status": "invalid_token", "schemes": "bearer", "scope": "mail"})


class TokenIssuer:
    """A token endpoint on 127.0.0.1 that accepts ``client_id``, ``client_secret`` and
    ``refresh_token`` and issues access tokens valid for ``lifetime`` seconds (said in
    ``expires_in``, as ``said_lifetime`` if given: a provider may be optimistic).
    ``valid(user, token)`` is the SMTP server's check; ``revoke()`` ends every token
    issued so far."""

    def __init__(
        self,
        *,
        client_id: str = "client-1",
        client_secret: str = "client-secret-1",
        refresh_token: str = "refresh-1",
        user: str = "sender@example.com",
        lifetime: float = 3600.0,
        said_lifetime: float | None = None,
    ) -> None:
        self.client_id, self.client_secret, self.refresh_token = (
            client_id,
            client_secret,
            refresh_token,
        )
        self.user = user
        self.lifetime = lifetime
        self.said_lifetime = said_lifetime
        self.issued: dict[str, float] = {}  # token -> when it expires (monotonic)
        self.requests = 0
        self.refused: list[str] = []  # tokens the SMTP server refused
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread: threading.Thread | None = None

    def issue(self) -> str:
        token = "ya29." + secrets.token_urlsafe(24)
        with self._lock:
            self.issued[token] = time.monotonic() + self.lifetime
        return token

    def valid(self, user: str, token: str) -> bool:
        with self._lock:
            ok = user == self.user and self.issued.get(token, 0.0) > time.monotonic()
            if not ok:
                self.refused.append(token)
        return ok

    def revoke(self) -> None:
        with self._lock:
            self.issued.clear()

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        wanted = (self.client_id, self.client_secret, self.refresh_token)
        given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if given != wanted:
            return 400, {"error": "invalid_grant"}
        said = self.said_lifetime if self.said_lifetime is not None else self.lifetime
        return 200, {"access_token": self.issue(), "expires_in": said, "token_type": "Bearer"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                status, answer = issuer._grant(form)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> TokenIssuer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _parse(mechanism: str, raw: bytes) -> tuple[str, str] | None:
    """(user, token) from an initial client response, None when malformed."""
    text = raw.decode("utf-8", "replace")
    if mechanism == "XOAUTH2":
        fields = dict(f.split("=", 1) for f in text.split("\x01") if "=" in f)
        user, auth = fields.get("user"), fields.get("auth", "")
    else:
        gs2, _, rest = text.partition("\x01")
        parts = gs2.split(",")
        if len(parts) < 3 or not parts[1].startswith("a="):
            return None
        user = parts[1][2:].replace("=2C", ",").replace("=3D", "=")
        fields = dict(f.split("=", 1) for f in rest.split("\x01") if "=" in f)
        auth = fields.get("auth", "")
    if not user or not auth.startswith("Bearer "):
        return None
    return user, auth.removeprefix("Bearer ")


async def sasl_oauth2(
    server: Any, args: list[str], mechanism: str, check: Callable[[str, str], bool]
) -> Any:
    """``AUTH XOAUTH2`` / ``AUTH OAUTHBEARER`` for aiosmtpd: the token checked with
    ``check(user, token)``; a refused one gets the error challenge, then 535."""
    from aiosmtpd.smtp import MISSING, AuthResult

    if len(args) == 2:
        try:
            raw = base64.b64decode(args[1], validate=True)
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad base64")
    else:
        got = await server.challenge_auth("")
        if got is MISSING:
            return AuthResult(success=False, handled=True)
        raw = got
    parsed = _parse(mechanism, raw)
    if parsed is None:
        return AuthResult(success=False, handled=False, message="501 5.5.2 malformed response")
    user, token = parsed
    if check(user, token):
        return AuthResult(success=True, auth_data=user)
    await server.challenge_auth(_ERROR)  # the client's answer ends the exchange
    return AuthResult(
        success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
    )
