"""An attachment's content type: guessed from its file name (the stdlib's mimetypes, as
for every face), and a type a client declares checked against that name.

A declared type must agree with the name, so that a file cannot pass for another kind
(``invoice.pdf`` declared ``image/png``, ``report.pdf.exe`` declared ``application/pdf``):

- no declared type, or ``application/octet-stream`` (what a client sends when it does
  not know): the type guessed from the name, else ``application/octet-stream``;
- a name whose extension mimetypes does not know: any well-formed type;
- otherwise the guessed type, or one mimetypes lists for the same extension
  (``application/xml`` for ``.xml``, where the guess is ``text/xml``).

Only the media type is kept, lowercase: parameters (``; charset=...``) are dropped, and
the part's own ``name`` parameter is written beside it (compose.attachment_part).
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath

from mailspool.errors import RejectedRow

OCTET_STREAM = "application/octet-stream"
#: RFC 6838 restricted-name, type and subtype
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
#: what a file compressed as a whole is (mimetypes gives .tar.gz as x-tar, encoding gzip)
_ENCODED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def guess_type(filename: str) -> str | None:
    """The content type of ``filename`` by its extension, or None when unknown."""
    ctype, encoding = mimetypes.guess_type(filename, strict=False)
    if encoding is not None:
        return _ENCODED.get(encoding, OCTET_STREAM)
    return ctype


def attachment_type(field: str, filename: str, declared: str | None = None) -> str:
    """The content type to send ``filename`` as, given the ``declared`` one (None: none
    declared); RejectedRow naming ``field`` when the declared type is malformed or does
    not agree with the name."""
    guessed = guess_type(filename)
    if declared is None:
        return guessed or OCTET_STREAM
    media = declared.partition(";")[0].strip().lower()
    if _MEDIA_TYPE.fullmatch(media) is None:
        raise RejectedRow(field, f"{declared[:100]!r} is not a content type (type/subtype)")
    if media == OCTET_STREAM:
        return guessed or OCTET_STREAM
    if guessed is None or media == guessed:
        return media
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix and suffix in mimetypes.guess_all_extensions(media, strict=False):
        return media
    raise RejectedRow(field, f"{media} does not match the file name {filename[:100]!r} ({guessed})")
