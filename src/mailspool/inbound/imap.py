"""Returned mail read from an IMAP mailbox: its URL (``imaps://user@host[:port]/MAILBOX``),
a session on it, and one pass (:func:`ingest_pass`): each message is fetched, applied,
and only then moved to the processed folder.

``imaps://`` is implicit TLS (port 993), ``imap://`` STARTTLS (port 143), which is
required: the password is never sent over plaintext, loopback or not (unlike SMTP's
loopback exception, an IMAP session always logs in). The certificate is verified, against
``?cafile=`` when given, unless ``?verify=off``. The password comes from the URL,
``MAILSPOOL_IMAP_PASSWORD`` or the file named by ``MAILSPOOL_IMAP_PASSWORD_FILE``, read as
the SMTP relay's is; it never appears in an error or a URL shown.

The standard library's imaplib, run in a thread (``asyncio.to_thread``), rather than
aioimaplib: a pass is a few sequential commands on one connection, so a thread costs
nothing, imaplib does STARTTLS, MOVE and UID commands, and it needs no new dependency.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

from mailspool.errors import ConfigError, MailspoolError
from mailspool.transport.url import check_cafile, client_tls_context, url_password
from mailspool.urls import DEFAULT_PROCESSED_FOLDER, check_mailbox_name, redact_url

__all__ = [
    "DEFAULT_PROCESSED_FOLDER",
    "ImapError",
    "ImapSession",
    "ImapSettings",
    "check_mailbox_name",
    "ingest_pass",
    "parse_imap_url",
]

PASSWORD_VARIABLE = "MAILSPOOL_IMAP_PASSWORD"
OPTIONS = frozenset(("cafile", "verify"))
_ON, _OFF = ("on", "true", "yes", "1"), ("off", "false", "no", "0")
#: messages fetched and applied between two moves
BATCH = 100


class ImapError(MailspoolError):
    """The IMAP server could not be reached, refused the login, or failed a command. The
    message names the mailbox by its URL shown (never the password)."""


@dataclass(frozen=True)
class ImapSettings:
    """A mailbox as its URL describes it (:func:`parse_imap_url`), timeouts in seconds."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    mailbox: str = "INBOX"
    implicit_tls: bool = True
    cafile: str | None = None
    verify: bool = True
    connect_timeout: float = 30.0
    command_timeout: float = 300.0

    @property
    def url(self) -> str:
        """The mailbox as a URL for output, logs and errors: the user, never the password."""
        scheme = "imaps" if self.implicit_tls else "imap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.username, safe="")
        return f"{scheme}://{user}@{host}:{self.port}/{quote(self.mailbox, safe='')}"

    def tls_context(self) -> ssl.SSLContext:
        return client_tls_context(self.cafile, self.verify)


def parse_imap_url(
    url: str, *, connect_timeout: float = 30.0, command_timeout: float = 300.0
) -> ImapSettings:
    """Parse and check a mailbox URL: ``imaps://user@host[:port]/MAILBOX[?cafile=...]``.
    Every problem is a :class:`ConfigError` whose message never holds the password."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"the IMAP URL {redact_url(url)} is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise ConfigError("the IMAP URL must start with imaps:// or imap://")
    if not host or port == 0:
        raise ConfigError("the IMAP URL has no host, or an invalid port")
    q = parse_qs(parts.query)
    unknown = set(q) - OPTIONS
    if unknown:
        raise ConfigError(f"unknown IMAP URL option(s): {', '.join(sorted(unknown))}")
    verify = q.get("verify", ["on"])[-1].lower()
    if verify not in _ON + _OFF:
        raise ConfigError("verify must be on or off")
    username = unquote(parts.username) if parts.username else ""
    if not username:
        raise ConfigError("the IMAP URL names no user: imaps://USER@host/INBOX")
    password = url_password(parts.password, PASSWORD_VARIABLE)
    if password is None:
        raise ConfigError(
            f"no password for the IMAP user {username}: set {PASSWORD_VARIABLE}"
            f" or {PASSWORD_VARIABLE}_FILE"
        )
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    implicit = scheme == "imaps"
    return ImapSettings(
        host=host,
        port=port or (993 if implicit else 143),
        username=username,
        password=password,
        mailbox=check_mailbox_name(mailbox, "the IMAP URL's mailbox"),
        implicit_tls=implicit,
        cafile=check_cafile(q.get("cafile", [None])[-1]),
        verify=verify in _ON,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: object) -> str:
    """A server's answer (bytes, a list of them, or an imaplib error) as one short line."""
    if isinstance(data, OSError) and data.strerror:
        data = data.strerror  # not its errno
    elif isinstance(data, BaseException):
        data = str(data) or type(data).__name__
    if isinstance(data, list):
        data = b" ".join(d for d in data if isinstance(d, bytes))
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    text = str(data)
    if text.startswith(("b'", 'b"')):  # imaplib puts the repr of the server's bytes
        text = text[2:-1]
    return "".join(c if c.isprintable() else " " for c in text)[:300]


class ImapSession:
    """One connection, logged in, its mailbox selected. Blocking (imaplib): call its
    methods from one thread at a time (:func:`ingest_pass` uses ``asyncio.to_thread``).
    ``use_move`` False moves with COPY + \\Deleted + EXPUNGE even where MOVE is offered."""

    def __init__(self, settings: ImapSettings, *, use_move: bool = True) -> None:
        self.settings = settings
        self.use_move = use_move
        self._imap: imaplib.IMAP4 | None = None
        self._capabilities: frozenset[str] = frozenset()

    @property
    def imap(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise ImapError(f"{self.settings.url}: not connected")
        return self._imap

    def _check(self, typ: str, data: object, doing: str) -> None:
        if typ != "OK":
            raise ImapError(f"{self.settings.url}: {doing} failed: {_text(data)}")

    def open(self, processed: str) -> None:
        """Connect, log in, create the ``processed`` folder when missing, select the mailbox."""
        s = self.settings
        try:
            if s.implicit_tls:
                self._imap = imaplib.IMAP4_SSL(
                    s.host, s.port, ssl_context=s.tls_context(), timeout=s.connect_timeout
                )
            else:
                self._imap = imaplib.IMAP4(s.host, s.port, timeout=s.connect_timeout)
            self.imap.sock.settimeout(s.command_timeout)
            if not s.implicit_tls:
                if "STARTTLS" not in self.imap.capabilities:
                    raise ImapError(
                        f"{s.url} offers no STARTTLS: refusing to send the password in"
                        " plaintext (use imaps://, or a server that offers STARTTLS)"
                    )
                self.imap.starttls(s.tls_context())
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise ImapError(f"{s.url}: certificate not accepted: {exc.verify_message}") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise ImapError(f"cannot connect to {s.url}: {_text(exc)}") from None
        except ImapError:
            self.close()
            raise
        try:
            self.imap.login(s.username, s.password)
        except imaplib.IMAP4.error as exc:
            self.close()
            raise ImapError(f"{s.url}: login refused: {_text(exc)}") from None
        try:
            # the capabilities after login (a server may list MOVE only then)
            typ, data = self.imap.capability()
            self._check(typ, data, "CAPABILITY")
            self._capabilities = frozenset(_text(data).upper().split())
            self._ensure_folder(processed)
            typ, data = self.imap.select(_quoted(s.mailbox))
            self._check(typ, data, f"opening the mailbox {s.mailbox}")
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise ImapError(f"{s.url}: {_text(exc)}") from None
        except ImapError:
            self.close()
            raise

    def _exists(self, folder: str) -> bool:
        typ, data = self.imap.list('""', _quoted(folder))
        self._check(typ, data, f"LIST {folder}")
        return any(d for d in data)

    def _ensure_folder(self, folder: str) -> None:
        if self._exists(folder):
            return
        typ, data = self.imap.create(_quoted(folder))
        if typ != "OK" and not self._exists(folder):  # not created by another reader either
            self._check(typ, data, f"creating the folder {folder}")

    def uids(self) -> list[int]:
        """The UIDs of the mailbox's messages (those not marked deleted), in order."""
        typ, data = self.imap.uid("SEARCH", "UNDELETED")
        self._check(typ, data, "SEARCH")
        return sorted(int(u) for u in _text(data).split())

    def fetch(self, uid: int) -> bytes | None:
        """The message's bytes (not marked seen), or None when it is gone."""
        typ, data = self.imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        self._check(typ, data, f"FETCH {uid}")
        for item in data:
            if isinstance(item, tuple) and b"BODY[]" in item[0].upper():
                return bytes(item[1])
        return None

    def move(self, uids: list[int], folder: str) -> None:
        """Move the messages to ``folder``: MOVE when the server has it, else COPY, mark
        deleted and expunge (only these UIDs with UIDPLUS; else every message marked
        deleted in the mailbox, which a plain EXPUNGE cannot avoid)."""
        seq, target = ",".join(map(str, uids)), _quoted(folder)
        if self.use_move and "MOVE" in self._capabilities:
            typ, data = self.imap.uid("MOVE", seq, target)
            self._check(typ, data, f"MOVE to {folder}")
            return
        typ, data = self.imap.uid("COPY", seq, target)
        self._check(typ, data, f"COPY to {folder}")
        typ, data = self.imap.uid("STORE", seq, "+FLAGS.SILENT", r"(\Deleted)")
        self._check(typ, data, "STORE \\Deleted")
        if "UIDPLUS" in self._capabilities:
            typ, data = self.imap.uid("EXPUNGE", seq)
        else:
            typ, data = self.imap.expunge()
        self._check(typ, data, "EXPUNGE")

    def close(self) -> None:
        """Log out (quietly: the connection may be broken already)."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            imap.shutdown()


#: applies one message: ``apply(uid, data)``; it returns once the outcome is durable
Apply = Callable[[int, bytes], Awaitable[None]]


async def ingest_pass(
    settings: ImapSettings,
    processed: str,
    apply: Apply,
    *,
    stopping: Callable[[], bool] = lambda: False,
    use_move: bool = True,
) -> int:
    """One pass over the mailbox: each message (in UID order) fetched and given to
    ``apply``, then moved to the ``processed`` folder, by batches, once ``apply`` has
    returned for it. When ``apply`` raises, the messages applied before are moved and the
    error propagates: that message and the rest stay in the mailbox for the next pass.
    ``stopping()`` True ends the pass between two messages. Returns how many were moved.
    """
    session = ImapSession(settings, use_move=use_move)
    await asyncio.to_thread(session.open, processed)
    moved = 0
    try:
        uids = await asyncio.to_thread(session.uids)
        for start in range(0, len(uids), BATCH):
            done: list[int] = []
            try:
                for uid in uids[start : start + BATCH]:
                    if stopping():
                        break
                    data = await asyncio.to_thread(session.fetch, uid)
                    if data is None:  # moved meanwhile by another reader
                        continue
                    await apply(uid, data)
                    done.append(uid)
            finally:
                if done:
                    await asyncio.to_thread(session.move, done, processed)
                    moved += len(done)
            if stopping():
                break
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapError(f"{settings.url}: {_text(exc)}") from None
    finally:
        await asyncio.to_thread(session.close)
    return moved
