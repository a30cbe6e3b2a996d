"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailspool.message.optout import LIST_NAME
from mailspool.models import CAMPAIGN_NAME, CampaignState, DeadReason, State
from mailspool.queue.returns import ReturnKind

MAX_BATCH = 1000
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CAMPAIGN_PATTERN = f"^{CAMPAIGN_NAME}$"  # the command line's rule: one for every face
IDEMPOTENCY_PATTERN = r"^[!-~]{1,200}$"  # printable ASCII, no spaces
#: a mailing list's name (message/optout.py LIST_NAME)
LIST_PATTERN = f"^{LIST_NAME.pattern}$"
MAX_TEMPLATE_CHARS = 1_000_000
#: attachments of one message, its own and those its batch shares
MAX_ATTACHMENTS = 100

Addresses = str | list[str]


class AttachmentIn(BaseModel):
    """A file attached in a JSON body, its content in base64."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        description="the name the recipient sees: no path separator, control or"
        " bidirectional character, at most 255 bytes in UTF-8"
    )
    content_type: str | None = Field(
        default=None,
        max_length=255,
        description="type/subtype, which must agree with the file name's extension"
        " (application/octet-stream always does); default: guessed from the name,"
        " else application/octet-stream",
    )
    content_base64: str = Field(
        description="the content in base64 (RFC 4648: standard alphabet, padded;"
        " line breaks allowed)"
    )


class MessageIn(BaseModel):
    """A message: the fields of a direct-mode CSV row, or a registered template and its
    variables. ``campaign`` groups messages (default ``api``); idempotency keys are scoped
    to it. ``list`` is the mailing list it is for."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from", description="sender address")
    to: Addresses | None = None
    cc: Addresses | None = None
    bcc: Addresses | None = None
    reply_to: Addresses | None = None
    subject: str | None = None
    text: str | None = Field(default=None, description="plain-text body")
    html: str | None = Field(default=None, description="HTML body (text part generated)")
    headers: dict[str, str] | None = Field(default=None, description="extra X- headers only")
    template: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="a template registered by name"
    )
    variables: dict[str, Any] | None = Field(default=None, description="the template's data")
    campaign: str | None = Field(default=None, pattern=CAMPAIGN_PATTERN)
    list_name: str | None = Field(
        default=None,
        alias="list",
        pattern=LIST_PATTERN,
        description="the mailing list the message is for: its unsubscribe link and"
        " suppressions (default: the server's --list)",
    )
    send_at: str | None = Field(
        default=None,
        max_length=64,
        description="send no earlier than this ISO 8601 time (2026-12-05T09:00:00+01:00;"
        " without an offset, UTC), at most a year ahead",
    )
    attachments: list[AttachmentIn] | None = Field(
        default=None, max_length=MAX_ATTACHMENTS, description="files attached to this message"
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_BATCH)
    attachments: list[AttachmentIn] | None = Field(
        default=None,
        max_length=MAX_ATTACHMENTS,
        description="files attached to every message of the batch (after its own), stored once",
    )


class MultipartIn(BaseModel):
    """A multipart/form-data body: the message (or batch) as JSON, and files attached
    to every message of it."""

    model_config = ConfigDict(extra="forbid")

    message: MessageIn | BatchIn = Field(
        description="the JSON body a request without files would have (Content-Type"
        " application/json, or none)"
    )
    attachment: list[bytes] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        description="a file (repeatable): its part's filename and Content-Type say its"
        " name and type",
    )


class Accepted(BaseModel):
    id: str


class AcceptedBatch(BaseModel):
    ids: list[str]


class FieldError(BaseModel):
    index: int | None = Field(description="the message's index in a batch (0 for one)")
    field: str
    reason: str


class ValidationFailed(BaseModel):
    detail: str
    errors: list[FieldError]


class ErrorBody(BaseModel):
    detail: str


class TooLargeBody(BaseModel):
    """A 413: the body over its limit, or a file over a size limit (named in errors)."""

    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="the attachment over a limit, when one is"
    )


class ReturnOut(BaseModel):
    """A bounce or complaint about one recipient of the message, the latest received."""

    kind: ReturnKind
    recipient: str
    status: str | None = Field(description="the enhanced status code (5.1.1), when known")
    permanent: bool = Field(description="false for a temporary bounce or a not-spam report")
    diagnostic: str = Field(description="the remote server's text, or the feedback type")
    received_at: str


class ReturnCountsOut(BaseModel):
    """Recipients of the campaign's messages that bounced for good, bounced for now, or
    complained (each counted once per kind)."""

    bounced: int
    soft_bounced: int
    complained: int


class MessageStatus(BaseModel):
    id: str
    campaign: str
    state: State
    attempts: int
    last_reply: str
    dead_reason: str | None
    message_id: str
    created_at: str
    updated_at: str
    next_attempt_at: str | None
    last_return: ReturnOut | None = Field(
        description="the bounce or complaint received last about this message, or null"
    )


class RelayOut(BaseModel):
    """A relay of a relay set as the workers delivering through it last published it."""

    name: str
    state: str = Field(description="up, probing (half-open after a pause) or paused")
    sent: int
    failed: int = Field(description="messages it failed (then sent through another, or deferred)")
    reason: str = Field(description="the reply or error it was last paused for")
    at: str = Field(description="when it was published")


class ProviderOut(BaseModel):
    """A provider's shaping as the workers delivering to it last published it."""

    name: str
    rate: float | None = Field(description="messages a second now; null: not limited")
    ceiling: float | None = Field(description="the rate it climbs back to; null: none")
    sent: int
    throttled: int = Field(description="throttling replies seen")
    suspended_for: float = Field(description="seconds left of a suspension (0: none)")
    last_reply: str = Field(description="the last throttling reply (empty: none yet)")
    at: str = Field(description="when it was published")


class CampaignStatus(BaseModel):
    campaign: str
    state: CampaignState = Field(
        description="active; paused (no worker claims its jobs until resumed); cancelled"
    )
    counts: dict[str, int]
    total: int
    pending: int
    ambiguous: int
    rate_per_s: float | None = Field(description="sent + dead per second, recent minute")
    eta_s: float | None = Field(description="seconds until nothing is pending at that rate")
    next_due_at: str | None
    returns: ReturnCountsOut
    relays: list[RelayOut] = Field(
        default_factory=list, description="with several relays: each one's state, as published"
    )
    providers: list[ProviderOut] = Field(
        default_factory=list,
        description="the providers mail was shaped for: each one's adapted rate, as published",
    )


class CampaignChanged(BaseModel):
    """What ``POST /v1/campaigns/{campaign}/pause|resume|cancel`` did."""

    campaign: str
    state: CampaignState = Field(description="the campaign's state now")
    cancelled: int = Field(description="jobs this request ended as cancelled (cancel only)")


class RetryFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign: str | None = Field(default=None, max_length=200)
    reason: DeadReason | None = None
    since: str | None = Field(
        default=None, max_length=40, description="only dead letters newer than this: 2h, 30m"
    )
    ids: list[str] = Field(default_factory=list, max_length=MAX_BATCH)


class RetryResult(BaseModel):
    retry: int


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        max_length=MAX_TEMPLATE_CHARS, description="header block, blank line, body (Jinja2)"
    )
    html: str | None = Field(
        default=None, max_length=MAX_TEMPLATE_CHARS, description="a separate HTML body"
    )


class TemplateOut(BaseModel):
    name: str
    version: int
    text: str
    html: str | None
    created_at: str


class Health(BaseModel):
    status: str
