"""A POST /v1/messages body read, files included: JSON (base64 files, per message or
beside a batch's messages for all of them) or multipart/form-data (a ``message`` part
holding that same JSON, and ``attachment`` file parts for every message of it).

Sizes come first, so that nothing is decoded past a limit: the first file over
``SizeLimits.per_file``, or taking the request's files over ``per_request``, refuses the
request (:class:`TooLarge`, a 413 naming it), as does the rest of the body over
``body``. Then each file is checked as every face's are: its name
(message/headers.check_filename), its declared type against the name
(message/filetypes.py), its base64; each problem a 422 naming the field. Files become
the request's :class:`Uploads`, each message the handles of its own and then its
batch's.

Field names: ``attachments.N`` for a message's own (``index`` its position) and for a
batch's shared ones (``index`` null), ``attachment.N`` for the N-th file part.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from mailspool.api.bodies import MAX_ATTACHMENTS, FieldError, MessageIn
from mailspool.api.intake import Invalid, Posted, error, split_body
from mailspool.api.multipart import BadForm, Part, parse_form
from mailspool.errors import RejectedRow
from mailspool.intake.uploads import Uploads
from mailspool.message.filetypes import attachment_type
from mailspool.message.headers import check_filename

MULTIPART = "multipart/form-data"
MESSAGE_PART = "message"
FILE_PART = "attachment"
#: what may stand between base64 characters (line breaks of 76-character lines)
_SPACE = str.maketrans("", "", " \t\r\n")


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """``per_file`` and ``per_request`` bytes of files (decoded), and ``body`` bytes of
    the body besides its files' content."""

    body: int
    per_file: int
    per_request: int

    @property
    def route_body(self) -> int:
        """The most a POST /v1/messages body may be: the files in base64 with line breaks
        (4/3, then 78/76), a part's headers each, and the rest."""
        files = -(-self.per_request // 3) * 4 * 78 // 76
        return self.body + files + MAX_ATTACHMENTS * 1024


class TooLarge(Exception):
    """The request is over a size limit (413); ``errors`` names the file, when one is."""

    def __init__(self, detail: str, found: FieldError | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = [] if found is None else [found]


@dataclass
class Received:
    """A request read: its messages, whether it was a batch, its files, the handles of
    each message's files (in the order of ``messages``), and what was wrong with files
    (reported with the messages' own errors; a message with a bad file gets none)."""

    messages: list[MessageIn]
    batch: bool
    uploads: Uploads = field(default_factory=Uploads)
    attach: list[tuple[str, ...]] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)


@dataclass(slots=True)
class _File:
    """A file as posted: base64 text (JSON) or bytes (a file part)."""

    index: int | None
    field: str
    filename: str
    content_type: str | None
    content: str | bytes

    @property
    def size(self) -> int:
        if isinstance(self.content, bytes):
            return len(self.content)
        pad = len(self.content) - len(self.content.rstrip("="))
        return len(self.content) * 3 // 4 - min(pad, 2)


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lowercase, without parameters."""
    return content_type.partition(";")[0].strip().lower()


def read_body(content_type: str, raw: bytes, limits: SizeLimits) -> Received:
    """A body of ``content_type``, multipart/form-data or else JSON; Invalid, NotUTF8 or
    TooLarge when it cannot be taken."""
    if media_type(content_type) == MULTIPART:
        return read_multipart(content_type, raw, limits)
    return read_json(raw, limits)


def read_json(raw: bytes, limits: SizeLimits) -> Received:
    """An application/json body; Invalid, NotUTF8 or TooLarge when it cannot be taken."""
    posted = split_body(raw)
    _check_body(len(raw) - _inline(posted), limits)
    own, shared = _json_files(posted)
    return _receive(posted, own, shared, limits)


def read_multipart(content_type: str, raw: bytes, limits: SizeLimits) -> Received:
    """A multipart/form-data body; Invalid, NotUTF8 or TooLarge when it cannot be taken."""
    try:
        parts = parse_form(content_type, raw, max_parts=MAX_ATTACHMENTS + 1)
    except BadForm as exc:
        raise Invalid([error(None, "body", str(exc))]) from None
    message: Part | None = None
    files: list[_File] = []
    for part in parts:
        if part.name == MESSAGE_PART and message is None:
            message = part
        elif part.name == FILE_PART:
            files.append(_file_part(part, len(files)))
        else:
            reason = f"the parts are one {MESSAGE_PART} and {FILE_PART} files"
            raise Invalid([error(None, part.name[:100], f"unexpected part: {reason}")])
    if message is None:
        reason = "a multipart body needs a message part: the message or batch, as JSON"
        raise Invalid([error(None, MESSAGE_PART, reason)])
    posted = split_body(message.data)
    _check_body(len(raw) - sum(len(f.content) for f in files) - _inline(posted), limits)
    own, shared = _json_files(posted)
    return _receive(posted, own, [*shared, *files], limits)


def _file_part(part: Part, n: int) -> _File:
    field = f"{FILE_PART}.{n}"
    if part.filename is None:
        raise Invalid([error(None, f"{field}.filename", "a file part needs a filename")])
    return _File(None, field, part.filename, part.content_type, part.data)


def _json_files(posted: Posted) -> tuple[list[list[_File]], list[_File]]:
    """Each message's own files, and the batch's shared ones, base64 still (compacted:
    the line breaks taken out)."""
    own = [
        [
            _File(i, f"attachments.{k}", a.filename, a.content_type, _compact(a.content_base64))
            for k, a in enumerate(msg.attachments or ())
        ]
        for i, msg in enumerate(posted.messages)
    ]
    shared = [
        _File(None, f"attachments.{k}", a.filename, a.content_type, _compact(a.content_base64))
        for k, a in enumerate(posted.shared)
    ]
    return own, shared


def _compact(text: str) -> str:
    return text.translate(_SPACE)


def _inline(posted: Posted) -> int:
    """The characters of base64 content in a JSON body."""
    files = [*posted.shared, *(a for m in posted.messages for a in m.attachments or ())]
    return sum(len(a.content_base64) for a in files)


def _check_body(rest: int, limits: SizeLimits) -> None:
    if rest > limits.body:
        raise TooLarge(f"request body over {limits.body} bytes besides its attachments")


def _check_sizes(files: list[_File], limits: SizeLimits) -> None:
    """TooLarge for the first file over the limit per file, or taking the request's
    files over the limit per request."""
    total = 0
    for f in files:
        size = f.size
        total += size
        name = f.filename[:100]
        if size > limits.per_file:
            reason = f"{name!r} is {size} bytes, over the limit of {limits.per_file} per file"
        elif total > limits.per_request:
            reason = (
                f"{name!r} takes the request's attachments to {total} bytes, over the limit"
                f" of {limits.per_request} per request"
            )
        else:
            continue
        raise TooLarge(f"attachment {name!r} is too large", error(f.index, f.field, reason))


def _receive(
    posted: Posted, own: list[list[_File]], shared: list[_File], limits: SizeLimits
) -> Received:
    _check_sizes([*(f for fs in own for f in fs), *shared], limits)
    out = Received(posted.messages, posted.batch)
    shared_handles = [_take(f, out) for f in shared]
    for i, files in enumerate(own):
        handles = [*(_take(f, out) for f in files), *shared_handles]
        if len(handles) > MAX_ATTACHMENTS:
            reason = f"more than {MAX_ATTACHMENTS} attachments, its own and its batch's"
            out.errors.append(error(i, "attachments", reason))
        # a file that failed has no handle: the message is still built, for its errors
        out.attach.append(tuple(h for h in handles if h is not None))
    return out


def _take(f: _File, out: Received) -> str | None:
    """The file checked and added to the request's uploads (its handle), or None and
    its errors in ``out``."""
    try:
        name = check_filename(f"{f.field}.filename", f.filename)
        ctype = attachment_type(f"{f.field}.content_type", name, f.content_type)
    except RejectedRow as exc:
        out.errors.append(error(f.index, exc.field, exc.reason))
        return None
    data = f.content if isinstance(f.content, bytes) else _base64(f.content)
    if data is None:
        reason = "not base64 (RFC 4648: A-Z a-z 0-9 + /, padded with = to a multiple of 4)"
        out.errors.append(error(f.index, f"{f.field}.content_base64", reason))
        return None
    return out.uploads.add(name, ctype, data)


def _base64(text: str) -> bytes | None:
    """The bytes of base64 ``text`` (its line breaks taken out), or None when it is not
    base64: strict, as binascii's strict mode is, and padded to a multiple of 4 (which
    that mode does not check at the end)."""
    if len(text) % 4:
        return None
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
