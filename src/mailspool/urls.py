"""URLs: redaction for display, loopback detection, and the one plug-in style every
pluggable layer uses (a class chosen by a URL's scheme or a file's extension).

Every URL mailspool shows (logs, summaries, errors, ``status``) goes through
:func:`redact_url` first: a password in the user part, or in a query parameter such as
``password=`` or ``token=``, becomes ``***``.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from typing import Generic, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from mailspool.errors import ConfigError

T = TypeVar("T")
# query parameters whose values redact_url hides
_SECRET_PARAMS = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def redact_url(url: str) -> str:
    """A URL with any password (in the user part, or a query parameter such as
    ``password=`` or ``token=``) replaced by ***, for logs and summaries. A URL without
    secrets comes back unchanged (``sqlite:////abs/path.db`` keeps its slashes)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc, query = parts.netloc, parts.query
    if not netloc and "@" in url:  # no scheme://, e.g. user:secret@host
        userinfo, _, host = url.rpartition("@")
        return f"{userinfo.split(':', 1)[0]}:***@{host}"
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    if query:
        query = "&".join(_redact_param(p) for p in query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    head, sep, rest = url.partition("://")
    if sep and rest.startswith(parts.netloc) and parts.query in rest:
        # edit the text in place, so that the rest of the URL stays as the user wrote it
        rest = netloc + rest[len(parts.netloc) :]
        if query != parts.query:
            path, _, tail = rest.partition("?")
            rest = f"{path}?{query}{tail[len(parts.query) :]}"
        return f"{head}://{rest}"
    # urlsplit dropped characters (tabs, newlines): rebuild from the parts instead
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    return f"{name}=***" if eq and _SECRET_PARAMS.search(unquote(name)) else param


class Plugins(Generic[T]):
    """The classes of one pluggable layer (queues, job stores, transports, sources,
    limits) by key: a URL scheme or a file extension. A class is imported when it is
    first asked for, so an optional backend's package is needed only by those who use
    it (its module raises :class:`~mailspool.errors.MissingExtra` when that is missing).

    ``entries`` maps each key to ``"module:Class"``; ``usage`` ends the error for an
    unknown key (what to write instead).
    """

    def __init__(self, kind: str, entries: dict[str, str], usage: str) -> None:
        self.kind = kind
        self.entries = entries
        self.usage = usage

    def __contains__(self, key: str) -> bool:
        return key.lower() in self.entries

    def get(self, key: str, shown: str | None = None) -> type[T]:
        """The class for ``key``; ``shown`` is what the error names (the redacted URL)."""
        target = self.entries.get(key.lower())
        if target is None:
            raise ConfigError(f"unsupported {self.kind} {shown or key!r}: {self.usage}")
        module, _, name = target.partition(":")
        cls: type[T] = getattr(importlib.import_module(module), name)
        return cls

    def for_url(self, url: str) -> type[T]:
        return self.get(scheme_of(url), repr(redact_url(url)))


#: where ``inbound ingest --imap`` moves what it processed (a setting's default: here,
#: where the settings can read it without importing the IMAP client)
DEFAULT_PROCESSED_FOLDER = "mailspool-processed"
# printable ASCII but LIST's wildcards: non-ASCII names need modified UTF-7 (not done)
_MAILBOX = re.compile(r"[\x20-\x7e]{1,200}", re.ASCII)


def check_mailbox_name(name: str, what: str) -> str:
    """``name`` when it is an IMAP mailbox name mailspool can quote; ConfigError naming
    ``what`` otherwise."""
    if not _MAILBOX.fullmatch(name) or "*" in name or "%" in name:
        raise ConfigError(
            f"{what} must be 1-200 printable ASCII characters, without * or %: {name!r}"
        )
    return name
