"""What a job builder adds to a message for deliverability: the one-click unsubscribe link
(RFC 8058 headers and the ``{{ unsubscribe_url }}`` template variable) and the DKIM
signature (RFC 6376).

The link names the message's first recipient (To, else Cc, else Bcc), the job's list and
the campaign (message/unsubscribe.py). The recipient is known only once the row is
rendered, so the template variable holds a placeholder while it renders, replaced by the
URL afterwards (HTML-escaped in an HTML body).

Signing happens here, at intake, over the final bytes: the message as composed with its
attachments wrapped in exactly as the worker will wrap them (message/compose.py
``with_attachments``: the boundary comes from the Message-ID, which a retry of refused
recipients keeps). The signature lines are stored in front of the job's message, so every
worker, at any time, sends the bytes that were signed.

With a return path (``--return-path``, message/verp.py) the job's envelope sender is the
VERP address naming the job, made here too: every worker sends it, whatever the queue.
The envelope is not signed, and the From header stays as the message has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailspool.errors import RejectedRow
from mailspool.message.compose import with_attachments
from mailspool.message.optout import DEFAULT_LIST, check_list_name
from mailspool.message.render import Rendered
from mailspool.message.unsubscribe import (
    PLACEHOLDER,
    UnsubscribeLinks,
    list_unsubscribe_headers,
    unsubscribe_url,
)
from mailspool.models import Job

if TYPE_CHECKING:  # DKIM (cryptography's keys) is loaded only where there are keys, VERP
    # only with a return path
    from mailspool.message.dkim import Signer
    from mailspool.message.verp import ReturnPath


@dataclass(frozen=True, kw_only=True)
class Deliverability:
    """What a job builder signs and links with; the default adds nothing.

    ``signer``: the DKIM keys (``--dkim``), None for none; ``dkim_required``: reject a
    row whose From domain has no key (``--dkim-required``); ``unsubscribe``: the
    one-click unsubscribe links (``--unsubscribe-url``), None for none; ``list_name``:
    the list a builder's messages are for (``--list``), unless a message names its own;
    ``return_path``: the VERP envelope sender naming each job (``--return-path``), None
    for the From address. Pickles (render processes take it in their BuildSpec)."""

    signer: Signer | None = None
    dkim_required: bool = False
    unsubscribe: UnsubscribeLinks | None = None
    list_name: str = DEFAULT_LIST
    return_path: ReturnPath | None = None

    def __post_init__(self) -> None:
        check_list_name(self.list_name)
        if self.dkim_required and not (self.signer is not None and self.signer.keys):
            raise ValueError("--dkim-required needs at least one DKIM key (--dkim)")


def first_recipient(r: Rendered) -> tuple[str, str]:
    """(header name, address) of the recipient an unsubscribe link names: the first of
    To, else of Cc, else of Bcc."""
    for name, addresses in (("To", r.to), ("Cc", r.cc), ("Bcc", r.bcc)):
        if addresses:
            return name, addresses[0][1]
    raise RejectedRow("To", "no recipient address")


def add_unsubscribe(
    r: Rendered, links: UnsubscribeLinks, list_name: str, campaign: str
) -> list[tuple[str, str]]:
    """Put the first recipient's link where the template used the variable in ``r``, and
    return the List-Unsubscribe and List-Unsubscribe-Post header fields (to be written
    unfolded: at most about 960 characters, message/unsubscribe.py)."""
    field, address = first_recipient(r)
    try:
        token = links.token(address, list_name, campaign)
    except ValueError as exc:
        raise RejectedRow(field, str(exc)) from None
    url = unsubscribe_url(links.base_url, token)
    if PLACEHOLDER in r.text:
        r.text = r.text.replace(PLACEHOLDER, url)
    if r.html is not None and PLACEHOLDER in r.html:
        import html  # html.entities: only for an HTML part with the link

        r.html = r.html.replace(PLACEHOLDER, html.escape(url))
    if PLACEHOLDER in r.subject:
        r.subject = r.subject.replace(PLACEHOLDER, url)
    if any(PLACEHOLDER in v for _, v in r.headers):
        r.headers = [(n, v.replace(PLACEHOLDER, url)) for n, v in r.headers]
    return list_unsubscribe_headers(links.base_url, token)


def is_signed(job: Job) -> bool:
    """Whether :func:`sign` put a signature in front of the job's message (a template
    may not write a DKIM-Signature of its own: message/headers.py)."""
    return job.message.startswith(b"DKIM-Signature:")


def sign(job: Job, signer: Signer, parts: Sequence[bytes]) -> bool:
    """Sign the job's message as it will be sent (``parts``: one attachment part per
    ``job.attachments``) and put the signature lines in front of it, ``body_offset``
    moved by their length. False when no key is for the From domain (left unsigned)."""
    try:
        lines = signer.sign(with_attachments(job, parts), timestamp=int(job.created_at))
    except ValueError as exc:  # the message's own From cannot be read: not ours to send
        raise RejectedRow("From", str(exc)) from None
    if not lines:
        return False
    job.message = lines + job.message
    job.body_offset += len(lines)
    return True
