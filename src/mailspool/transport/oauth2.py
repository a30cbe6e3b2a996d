"""OAuth2 for SMTP: the SASL mechanisms XOAUTH2 (Google, Microsoft) and OAUTHBEARER
(RFC 7628), chosen with ``?auth=xoauth2`` or ``?auth=oauthbearer`` in the relay URL, and
where the access token comes from, named by the environment (exactly one):

- ``MAILSPOOL_SMTP_OAUTH2_TOKEN_COMMAND``: a command (split as a shell would, not run by
  one) that prints a fresh token, or a JSON object with ``access_token`` and
  ``expires_in``; run again when the token expires or the server refuses it;
- ``MAILSPOOL_SMTP_OAUTH2_TOKEN_FILE``: a file another process keeps fresh, read for each
  new connection;
- ``MAILSPOOL_SMTP_OAUTH2_TOKEN_URL`` with ``..._CLIENT_ID``, ``..._CLIENT_SECRET`` and
  ``..._REFRESH_TOKEN`` (each secret also from a ``_FILE``): the provider's token
  endpoint, asked for a new access token with the refresh token (RFC 6749 section 6)
  a minute before the last one expires, or when the server refuses it.

A token is never logged, never part of an error message, and never sent without TLS
except to a loopback relay (as for passwords).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from mailspool.errors import AuthFailure, ConfigError, Stage
from mailspool.urls import is_loopback

__all__ = [
    "MECHANISMS",
    "CommandToken",
    "FileToken",
    "RefreshToken",
    "TokenSource",
    "initial_response",
    "token_source",
]

MECHANISMS = ("xoauth2", "oauthbearer")
ENV = "MAILSPOOL_SMTP_OAUTH2_"
#: a token is replaced this many seconds before it expires (a connection made with it
#: must still authenticate)
MARGIN = 60.0
#: how long a token command or the token endpoint may take (seconds)
FETCH_TIMEOUT = 30.0
#: the most of a token endpoint's answer read
MAX_ANSWER = 64 * 1024


def initial_response(mechanism: str, user: str, token: str, host: str, port: int) -> bytes:
    """The base64 initial client response of ``mechanism`` (XOAUTH2: Google's format;
    OAUTHBEARER: RFC 7628 section 3.1, with the GS2 header naming the user)."""
    if mechanism == "xoauth2":
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        authzid = user.replace("=", "=3D").replace(",", "=2C")
        raw = f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode())


#: what the client answers to the server's error challenge (334 + base64 JSON) to end
#: the exchange: XOAUTH2 an empty line, OAUTHBEARER a single %x01 (RFC 7628 3.2.3)
ABORT = {"xoauth2": b"", "oauthbearer": base64.b64encode(b"\x01")}


class TokenSource(ABC):
    """An access token, fetched when there is none, it is about to expire, or the
    server refused it; one fetch at a time however many connections ask."""

    #: what it is, for messages (never the token or a secret)
    description = "an OAuth2 token"

    def __init__(self) -> None:
        self._token: str | None = None
        self._expires = 0.0  # monotonic
        self._lock: asyncio.Lock | None = None
        self.fetches = 0

    async def token(self) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires - MARGIN:
                token, lifetime = await self._fetch()
                self.fetches += 1
                if not token or any(c in token for c in "\r\n\x00\x01 "):
                    raise AuthFailure(f"{self.description} gave no usable token", stage=Stage.AUTH)
                self._token = token
                self._expires = time.monotonic() + (lifetime if lifetime else float("inf"))
            return self._token

    def refused(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`token` fetches another."""
        if self._token == token:
            self._token = None

    @abstractmethod
    async def _fetch(self) -> tuple[str, float | None]:
        """A fresh token and its lifetime in seconds (None: unknown). AuthFailure when
        there is none to be had."""


def _parse_answer(text: str, what: str) -> tuple[str, float | None]:
    """A token from a JSON answer (``access_token``, ``expires_in``) or a bare line."""
    text = text.strip()
    if not text.startswith("{"):
        return text.splitlines()[0].strip() if text else "", None
    try:
        answer = json.loads(text)
        token = answer["access_token"]
        lifetime = answer.get("expires_in")
        if not isinstance(token, str) or not isinstance(lifetime, int | float | None):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AuthFailure(f"{what} gave no access_token", stage=Stage.AUTH) from None
    return token, float(lifetime) if lifetime else None


class CommandToken(TokenSource):
    def __init__(self, command: str) -> None:
        super().__init__()
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"{ENV}TOKEN_COMMAND cannot be split into words: {exc}") from None
        if not self.argv:
            raise ConfigError(f"{ENV}TOKEN_COMMAND is empty")
        self.description = f"the token command {self.argv[0]}"

    async def _fetch(self) -> tuple[str, float | None]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise AuthFailure(
                f"{self.description} cannot run: {exc.strerror or exc}", stage=Stage.AUTH
            ) from None
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AuthFailure(
                f"{self.description} took over {FETCH_TIMEOUT:g}s", stage=Stage.AUTH
            ) from None
        if proc.returncode != 0:
            raise AuthFailure(
                f"{self.description} exited with status {proc.returncode}", stage=Stage.AUTH
            )
        return _parse_answer(out.decode("utf-8", "replace"), self.description)


class FileToken(TokenSource):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = f"the token file {path}"

    async def token(self) -> str:
        self._token = None  # read for each connection: another process keeps it fresh
        return await super().token()

    async def _fetch(self) -> tuple[str, float | None]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not readable as UTF-8 text"
            raise AuthFailure(f"cannot read {self.description}: {why}", stage=Stage.AUTH) from None
        return _parse_answer(text, self.description)


class RefreshToken(TokenSource):
    def __init__(
        self, url: str, client_id: str, client_secret: str | None, refresh_token: str
    ) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"{ENV}TOKEN_URL must be an https:// URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError(f"{ENV}TOKEN_URL must be https:// (secrets are sent to it)")
        self.url = url
        self.client_id = client_id
        self._secret = client_secret
        self._refresh = refresh_token
        self.description = f"the token endpoint {parts.hostname}"

    async def _fetch(self) -> tuple[str, float | None]:
        token, lifetime, rotated = await asyncio.to_thread(self._ask)
        if rotated:
            self._refresh = rotated  # a provider that rotates refresh tokens
        return token, lifetime

    def _ask(self) -> tuple[str, float | None, str | None]:
        # imported here: every relay URL loads this module, few ask a token endpoint
        import urllib.error
        import urllib.request

        form = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        form["client_id"] = self.client_id
        if self._secret:
            form["client_secret"] = self._secret
        request = urllib.request.Request(
            self.url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(
                request, timeout=FETCH_TIMEOUT
            ) as answer:  # https, or http on loopback
                text = answer.read(MAX_ANSWER).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            raise AuthFailure(
                f"{self.description} refused the refresh token: HTTP {exc.code}", stage=Stage.AUTH
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise AuthFailure(
                f"{self.description} cannot be reached: {why}", stage=Stage.AUTH
            ) from None
        token, lifetime = _parse_answer(text if text.strip() else "{}", self.description)
        try:
            rotated = json.loads(text).get("refresh_token")
        except (ValueError, AttributeError):
            rotated = None
        return token, lifetime, rotated if isinstance(rotated, str) and rotated else None


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``MAILSPOOL_SMTP_OAUTH2_<name>``, else the file its ``_FILE`` names."""
    value = env.get(ENV + name)
    if value:
        return value
    path = env.get(f"{ENV}{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not readable as UTF-8 text"
        raise ConfigError(f"{ENV}{name}_FILE: cannot read {path}: {why}") from None


def token_source(mechanism: str, env: Mapping[str, str] | None = None) -> TokenSource:
    """The token source the environment names for ``?auth=mechanism``."""
    env = os.environ if env is None else env
    command = env.get(ENV + "TOKEN_COMMAND")
    file = env.get(ENV + "TOKEN_FILE")
    url = env.get(ENV + "TOKEN_URL")
    named = [
        n for n, v in (("TOKEN_COMMAND", command), ("TOKEN_FILE", file), ("TOKEN_URL", url)) if v
    ]
    if len(named) != 1:
        given = f" (given: {', '.join(ENV + n for n in named)})" if named else ""
        raise ConfigError(
            f"auth={mechanism} needs exactly one of {ENV}TOKEN_COMMAND, {ENV}TOKEN_FILE or"
            f" {ENV}TOKEN_URL (with _CLIENT_ID and _REFRESH_TOKEN){given}"
        )
    if command:
        return CommandToken(command)
    if file:
        return FileToken(file)
    assert url is not None
    client_id = env.get(ENV + "CLIENT_ID")
    refresh = _secret(env, "REFRESH_TOKEN")
    if not client_id or not refresh:
        raise ConfigError(
            f"{ENV}TOKEN_URL needs {ENV}CLIENT_ID and {ENV}REFRESH_TOKEN (or _REFRESH_TOKEN_FILE)"
        )
    return RefreshToken(url, client_id, _secret(env, "CLIENT_SECRET"), refresh)
