"""Header names and values: the one check every way in goes through (a template, a CSV
cell, a JSONL field, an HTTP message), so a fix for one hostile input fixes it for all.

- A name must match RFC 5322's field-name grammar (printable ASCII except the colon,
  no space), at most ``MAX_NAME`` characters: anything else could end the header early
  and start another (``X-A: b\\r\\nBcc: ...``).
- A value may hold no control character but TAB: CR, LF and NUL would write new lines;
  the other C0 controls, DEL and the C1 controls are invisible in a mail reader and
  handled differently by every parser on the way. Unicode's line and paragraph
  separators count as line breaks for some of them, and a lone surrogate is not text.
- An attachment's file name is text in a header too, and a name a mail reader may save
  a file under: no control or bidirectional character, no path separator, no ``.`` or
  ``..``, at most ``MAX_FILENAME_BYTES`` in UTF-8 (a file system's limit).
- Some headers only mailspool writes (``PROTECTED``): the trace and authentication
  headers a relay or verifier relies on, those that describe the message's own
  structure, and the one-click unsubscribe headers. No face may set them.
"""

from __future__ import annotations

import re

from mailspool.errors import RejectedRow

MAX_NAME = 76  # "Name: " still leaves room on a 78-character line
#: a file name's length in UTF-8, as most file systems allow: encoded per RFC 2231
#: (3 characters a byte at most) it still fits on one header line
MAX_FILENAME_BYTES = 255
_NAME = re.compile(rf"[!-9;-~]{{1,{MAX_NAME}}}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# marks that reorder how text is shown: "invoice\u202efdp.exe" reads as "invoiceexe.pdf"
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: headers only mailspool writes, lowercase; ``arc-`` names are matched by prefix
PROTECTED = frozenset(
    (
        "return-path",
        "received",
        "dkim-signature",
        "authentication-results",
        "message-id",
        "date",
        "mime-version",
        "content-transfer-encoding",
        "content-disposition",
        "sender",
        # one-click unsubscribe: the signed link of the message's recipient
        "list-unsubscribe",
        "list-unsubscribe-post",
    )
)
PROTECTED_PREFIXES = ("arc-",)


def is_protected(name: str) -> bool:
    lname = name.lower()
    return lname in PROTECTED or lname.startswith(PROTECTED_PREFIXES)


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check_name(name: str, field: str) -> str:
    """A header name given as data (the ``headers`` of a JSONL row or an HTTP message)."""
    if not valid_name(name):
        raise RejectedRow(
            field,
            f"not a header name: printable ASCII except ':', no spaces, 1-{MAX_NAME} characters",
        )
    if is_protected(name):
        raise RejectedRow(field, f"{name} is written by mailspool and cannot be set")
    return name


def control_problem(value: str) -> str | None:
    """What is wrong with a header value or display name, or None."""
    m = _CONTROL.search(value)
    if m is None:
        return None
    ch = m.group()
    if ch in "\r\n\x00":
        return "header value contains a line break or NUL (header injection)"
    if "\ud800" <= ch <= "\udfff":
        return "contains characters that cannot be encoded (lone surrogates)"
    return f"header value contains a control character (U+{ord(ch):04X})"


def check_value(field: str, value: str) -> str:
    """A rendered header value, stripped; raises RejectedRow naming ``field``."""
    problem = control_problem(value)
    if problem is not None:
        raise RejectedRow(field, problem)
    return value.strip()


def check_text(field: str, value: str) -> None:
    """A body: any control character may stand in text, but not NUL nor a surrogate."""
    if "\x00" in value:
        raise RejectedRow(field, "body contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RejectedRow(
                field, "contains characters that cannot be encoded (lone surrogates)"
            ) from None


def check_filename(field: str, name: str) -> str:
    """An attachment's file name as it will stand in the part's headers: without the
    spaces around it, which mail readers drop. The one check of every face (a template's
    Attachment line, an upload to the HTTP API), so a fix for one fixes all."""
    problem = control_problem(name)
    if problem is not None or "\t" in name:
        raise RejectedRow(field, f"the file name {name[:100]!r} contains a control character")
    if _BIDI.search(name):
        raise RejectedRow(
            field,
            f"the file name {name[:100]!r} contains a bidirectional control character"
            " (it can disguise the file's type)",
        )
    stripped = name.strip()
    if not stripped:
        raise RejectedRow(field, "the file name is blank")
    if "/" in stripped or "\\" in stripped:
        # a mail reader saving it could write outside the folder the user chose
        raise RejectedRow(field, f"the file name {name[:100]!r} contains a path separator")
    if stripped in (".", ".."):
        raise RejectedRow(field, f"{stripped!r} is not a file name")
    if len(stripped.encode()) > MAX_FILENAME_BYTES:
        raise RejectedRow(
            field, f"the file name is longer than {MAX_FILENAME_BYTES} bytes (in UTF-8)"
        )
    return stripped


def safe_filename(name: str) -> str:
    """A file name with control and bidirectional characters replaced, for names stored
    before they were checked."""
    return _BIDI.sub("", _CONTROL.sub("_", name.replace("\t", "_")))
