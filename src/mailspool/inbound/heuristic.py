"""Non-standard bounces (the plain-text reports of many mail systems), read by the
detectors of flufl.bounce (GNU Mailman's), which say which addresses failed for good
and which only for now; and two shapes of text they miss: Exim's "the following
addresses failed" list without an X-Failed-Recipients header, and Sendmail's
"(expanded from: ...)", where the address we sent to is the one expanded from."""

from __future__ import annotations

import logging
import re
from email.message import Message

from flufl.bounce import all_failures

from mailspool.inbound import mime
from mailspool.inbound.report import Bounced

# flufl.bounce logs each detector it runs at INFO, and a detector's exception with its
# traceback; a hostile message is ours to judge, not a log's
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
MAX_RECIPIENTS = 100
_EXIM = re.compile(
    r"following address(?:es)?[ \t\r\n]+failed:?[ \t]*$", re.IGNORECASE | re.MULTILINE
)
_EXPANDED = re.compile(
    r"^[ \t]*<?(?P<final>[^\s<>()]+@[^\s<>()]+?)>?[ \t]*\r?\n[ \t]*\(expanded from:?\s*<?"
    r"(?P<original>[^\s<>()]+@[^\s<>()]+?)>?\)",
    re.IGNORECASE | re.MULTILINE,
)


def recipients(msg: Message) -> list[Bounced]:
    """The recipients the detectors find, permanent failures first, each once; [] when
    no detector recognises the message (or one fails on it)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        temporary, permanent = frozenset(), frozenset()
    body = _body(msg)
    expanded = _expanded(body)
    out: dict[str, Bounced] = {}
    for found, is_permanent in ((permanent, True), (temporary, False)):
        for raw in sorted(found)[:MAX_RECIPIENTS]:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            addr = mime.address(text)
            addr = expanded.get(addr, addr) if addr else None
            if addr and addr not in out:
                out[addr] = Bounced(
                    addr, None, is_permanent, "failed" if is_permanent else "delayed"
                )
    if not out:
        for addr in exim_failed(body):
            out[addr] = Bounced(addr, None, True, "failed")
    return list(out.values())


def _body(msg: Message) -> str:
    """The text of the bounce itself: its first text part (or its body)."""
    for part in mime.walk(msg, max_depth=2):
        if mime.content_type(part).startswith("text/") and not isinstance(part.get_payload(), list):
            return mime.text(part)
    return ""


def _expanded(body: str) -> dict[str, str]:
    """Sendmail's ``final`` + ``(expanded from: original)``, as final -> original."""
    out = {}
    for found in _EXPANDED.finditer(body):
        final, original = mime.address(found["final"]), mime.address(found["original"])
        if final and original:
            out[final] = original
    return out


def exim_failed(body: str) -> list[str]:
    """The addresses of Exim's "The following addresses failed:" list: each at the
    start of a line (the indented lines under it are its reason), up to the first
    blank line after the list."""
    found = _EXIM.search(body)
    if found is None:
        return []
    out: list[str] = []
    started = False
    for line in body[found.end() :].splitlines()[1:200]:
        if not line.strip():
            if started:
                break
            continue
        started = True
        if line[:1].isspace():
            continue  # the reason for the address above
        addr = mime.address(line.strip().rstrip(":").strip())
        if addr and addr not in out:
            out.append(addr)
        if len(out) >= MAX_RECIPIENTS:
            break
    return out
