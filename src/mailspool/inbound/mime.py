"""Careful reading of a parsed message: the parts of a report, their text and fields,
the addresses and Message-ID they hold. Nothing here raises on malformed input: a
value that cannot be read is None (or empty).

Messages are parsed with the ``compat32`` policy, the most forgiving one: header
values stay plain strings (undecodable bytes as surrogate escapes) and a
``message/*`` part holds its inner message (or, for ``message/delivery-status``, its
blocks of fields) as a list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message
from email.parser import HeaderParser

from mailspool.message.addresses import normalize

MAX_DEPTH = 8  # message/rfc822 inside message/rfc822...: bombs are not followed further
MAX_PARTS = 500
RETURNED = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers"}
    | {"text/global-headers", "message/global-headers"}
)
MAX_TEXT = 256 * 1024  # of one part's text, searched by regular expressions
_ANGLED = re.compile(r"<([^<>\s]{1,500})>")
_ID = r"[\x21-\x3b\x3d\x3f-\x7e]{1,500}"  # printable ASCII but < and >
_ANGLED_ID = re.compile(rf"<({_ID})>")
_MESSAGE_ID = re.compile(rf"^[ \t]*Message-ID:[ \t]*(<{_ID}>)", re.IGNORECASE | re.MULTILINE)


def walk(msg: Message, max_depth: int = MAX_DEPTH) -> Iterator[Message]:
    """The parts of ``msg`` (itself first), depth first, iteratively: no recursion,
    at most ``max_depth`` levels and ``MAX_PARTS`` parts."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part
        if depth >= max_depth:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((c, depth + 1) for c in reversed(children))


def content_type(part: Message) -> str:
    """The part's content type, lower-case (``text/plain`` when unreadable)."""
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def param(part: Message, name: str) -> str | None:
    """A parameter of the part's Content-Type, lower-case, or None."""
    try:
        value = part.get_param(name)
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231 encoded
        value = value[2]
    return str(value).strip().lower() if value else None


def header(part: Message, name: str) -> str | None:
    """A header's value as one stripped line, or None."""
    try:
        value = part.get(name)
    except Exception:
        return None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def headers(part: Message, name: str) -> list[str]:
    """Every value of a header that may repeat (Original-Rcpt-To)."""
    try:
        values = part.get_all(name) or []
    except Exception:
        return []
    return [" ".join(str(v).split()) for v in values]


def text(part: Message) -> str:
    """The decoded text of a non-multipart part (transfer encoding undone, charset
    applied with replacement), at most ``MAX_TEXT`` characters; "" when none."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw[:MAX_TEXT] if isinstance(raw, str) else ""
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        return payload[:MAX_TEXT].decode(charset, errors="replace")
    except Exception:
        return payload[:MAX_TEXT].decode("utf-8", errors="replace")


def field_blocks(part: Message) -> list[Message]:
    """The blocks of fields of a ``message/delivery-status`` or
    ``message/feedback-report`` part, however it was parsed (a list of blocks, an
    inner message, or plain text with blank lines between blocks)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [p for p in payload if isinstance(p, Message)]
        if len(blocks) == 1 and not blocks[0].keys():
            body = blocks[0].get_payload()
            return _split_blocks(body) if isinstance(body, str) else blocks
        return blocks
    return _split_blocks(text(part))


def _split_blocks(body: str) -> list[Message]:
    parser = HeaderParser()
    chunks = re.split(r"\r?\n[ \t]*\r?\n", body.strip("\r\n"))
    out = []
    for chunk in chunks[:MAX_PARTS]:
        try:
            out.append(parser.parsestr(chunk.lstrip("\r\n") + "\n"))
        except Exception:
            continue
    return [b for b in out if b.keys()]


def address(value: str | None) -> str | None:
    """The one address in a field value (``rfc822; <a@b.example>``, ``A <a@b.example>``,
    ``a@b.example (comment)``), validated and lower-cased; None for anything else."""
    if not value:
        return None
    value = value.strip()
    kind, sep, rest = value.partition(";")
    if sep and "@" not in kind:
        value = rest.strip()
    angled = _ANGLED.search(value)
    value = angled.group(1) if angled else value.split("(", 1)[0].strip().strip("'\"")
    if " " in value or not value:
        return None
    try:
        normalized = normalize(value)
    except Exception:
        return None
    return normalized.lower()


def message_id(value: str | None) -> str | None:
    """A Message-ID value as ``<id>``, or None when it is not one."""
    if not value:
        return None
    found = _ANGLED_ID.search(value)
    if found:
        return f"<{found.group(1)}>"
    bare = re.fullmatch(_ID, value.strip())
    return f"<{bare.group(0)}>" if bare and "@" in value else None


def returned_headers(part: Message) -> Message | None:
    """The original message's headers in a ``message/rfc822`` or
    ``text/rfc822-headers`` part (``message/rfc822-headers`` as some systems write
    it), or None."""
    ctype = content_type(part)
    if ctype not in RETURNED:
        return None
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        return inner
    if ctype.endswith("-headers"):
        body = text(part)
        try:
            return HeaderParser().parsestr(body.lstrip("\r\n"))
        except Exception:
            return None
    return None


def original_message_id(msg: Message, *, search_text: bool = False) -> str | None:
    """The Message-ID of the original message returned inside ``msg``: from a
    returned-headers part, or (``search_text``) from a ``Message-ID:`` line quoted in
    a text part, as non-standard bounces give it."""
    for part in walk(msg):
        if part is msg:
            continue
        inner = returned_headers(part)
        if inner is not None:
            found = message_id(header(inner, "Message-ID"))
            if found:
                return found
    if not search_text:
        return None
    for part in walk(msg):
        if content_type(part).split("/")[0] not in ("text", "message"):
            continue
        if isinstance(part.get_payload(), list):
            continue
        line = _MESSAGE_ID.search(text(part))
        if line:
            return line.group(1)
    return None
