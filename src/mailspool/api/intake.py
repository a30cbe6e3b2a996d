"""Posted messages -> validated, rendered jobs -> the queue.

The body is read here rather than by FastAPI so that each failing message is reported
with its index; rendering and validation are the job builder's (intake/builder.py),
exactly as for a CSV row. A message attaches the files that came with it
(api/attachments.py), never files from the server's disk.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from mailspool.api.bodies import MAX_ATTACHMENTS, MAX_BATCH, AttachmentIn, FieldError, MessageIn
from mailspool.api.senders import SenderDomains
from mailspool.errors import RejectedRow
from mailspool.intake.builder import JobBuilder, NoAttachments
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.screen import screen, suppression_list
from mailspool.intake.sources.base import Row
from mailspool.intake.uploads import Uploads
from mailspool.message.render import Renderer
from mailspool.models import Enqueued, Job
from mailspool.queue import Queue

DEFAULT_CAMPAIGN = "api"
#: the row value that carries a message's idempotency key to the job builder (its
#: ``key_column``); set after the variables, so a variable cannot take its place
KEY_FIELD = "\x00idempotency-key"
#: API messages cannot attach files from the server's disk (a message with files of its
#: request is built with those: JobBuilder.using)
NO_ATTACHMENTS = NoAttachments(reason="a message attaches only the files of its request")
#: renderer field -> API field, for error reports
API_FIELDS = {
    "from": "from", "to": "to", "cc": "cc", "bcc": "bcc", "reply-to": "reply_to",
    "subject": "subject", "body": "text", "html": "html", "attachment": "attachments",
}  # fmt: skip
DIRECT_FIELDS = ("from", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "headers")
ADDRESS_FIELDS = frozenset(("to", "cc", "bcc", "reply_to"))
_ITEMS = TypeAdapter(list[Any])
NOT_JSON = "not valid JSON"
_SHARED = TypeAdapter(Annotated[list[AttachmentIn], Field(max_length=MAX_ATTACHMENTS)])


class NotUTF8(Exception):
    """The request body is not UTF-8 (400, as for every route)."""


class Invalid(Exception):
    """One or more messages of a request failed; nothing of it is queued."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} validation errors")
        self.errors = errors


def error(index: int | None, field_name: str, reason: str) -> FieldError:
    return FieldError(index=index, field=field_name, reason=reason)


def pydantic_errors(exc: ValidationError, index: int | None, prefix: str = "") -> list[FieldError]:
    """An error per field of ``exc``, named below ``prefix`` when one is given."""
    out: list[FieldError] = []
    seen: set[str] = set()
    for e in exc.errors(include_url=False, include_input=False):
        if e["type"] == "json_invalid":  # said as split_body says it
            out.append(error(index, "body", NOT_JSON))
            continue
        loc = [prefix] if prefix else []
        loc += [str(p) for p in e["loc"]]
        if not prefix and loc and loc[0] in ADDRESS_FIELDS:  # one error for the union
            if loc[0] not in seen:
                seen.add(loc[0])
                out.append(error(index, loc[0], "must be an address or a list of addresses"))
            continue
        out.append(error(index, ".".join(loc) or "body", str(e["msg"])))
    return out


@dataclass
class Posted:
    """A JSON body read: its messages, whether it was a batch, and the files beside a
    batch's messages (attached to each)."""

    messages: list[MessageIn]
    batch: bool
    shared: list[AttachmentIn] = field(default_factory=list)


def split_body(raw: bytes) -> Posted:
    """The messages of a JSON request body; raises Invalid, or NotUTF8 for a body that
    is not text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotUTF8 from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise Invalid([error(None, "body", NOT_JSON)]) from None
    if not isinstance(body, dict):
        raise Invalid([error(None, "body", 'expected a message object or {"messages": [...]}')])
    batch = "messages" in body
    items: list[Any] = [body]
    shared: list[AttachmentIn] = []
    if batch:
        items, shared = batch_items(body)
    messages: list[MessageIn] = []
    errors: list[FieldError] = []
    for i, item in enumerate(items):
        try:
            msg = MessageIn.model_validate(item)
        except ValidationError as exc:
            errors += pydantic_errors(exc, i)
            continue
        errors += mode_errors(msg, i)
        messages.append(msg)
    if errors:
        raise Invalid(errors)
    return Posted(messages, batch, shared)


def batch_items(body: dict[str, Any]) -> tuple[list[Any], list[AttachmentIn]]:
    """A batch's messages (unchecked) and the files shared by all of them."""
    extra = sorted(set(body) - {"messages", "attachments"})
    if extra:
        raise Invalid([error(None, extra[0], "not allowed beside messages")])
    try:
        items = _ITEMS.validate_python(body["messages"])
    except ValidationError:
        raise Invalid([error(None, "messages", "must be a list of messages")]) from None
    if not 1 <= len(items) <= MAX_BATCH:
        raise Invalid([error(None, "messages", f"1 to {MAX_BATCH} messages per request")])
    shared: list[AttachmentIn] = []
    if body.get("attachments") is not None:
        try:
            shared = _SHARED.validate_python(body["attachments"])
        except ValidationError as exc:
            raise Invalid(pydantic_errors(exc, None, "attachments")) from None
    return items, shared


def mode_errors(msg: MessageIn, index: int) -> list[FieldError]:
    """A message is direct fields, or a template with variables, never both: with a
    template, direct fields would be ignored, and a from or subject default would be
    compiled as a template written by an untrusted client."""
    if msg.template is None:
        if msg.variables is not None:
            return [error(index, "variables", "variables need a template")]
        return []
    return [
        error(index, name, "not allowed with template (the template sets it)")
        for name in DIRECT_FIELDS
        if getattr(msg, "from_" if name == "from" else name) is not None
    ]


def direct_values(msg: MessageIn) -> dict[str, Any]:
    """A direct-mode row: the columns the renderer reads."""
    values: dict[str, Any] = {}
    for name in DIRECT_FIELDS:
        value = getattr(msg, "from_" if name == "from" else name)
        if value is not None:
            values[name] = value
    return values


@dataclass
class Built:
    """What build_jobs made of a request's messages: the jobs of those that passed, and
    an error for each field of the others."""

    jobs: list[Job]
    errors: list[FieldError] = field(default_factory=list)


def api_builder(renderer: Renderer, campaign: str, deliverability: Deliverability) -> JobBuilder:
    """The job builder for a campaign's messages rendered by ``renderer``: keyed by
    KEY_FIELD, without attachments, signed and linked as ``deliverability`` says."""
    return JobBuilder(
        renderer=renderer,
        campaign=campaign,
        attachments=NO_ATTACHMENTS,
        key_column=KEY_FIELD,
        deliverability=deliverability,
    )


@dataclass(frozen=True, slots=True)
class Item:
    """One posted message to build: its ``index`` in the request, its job ``builder``,
    its row ``values``, the ``list_name`` it is for and when it may be sent."""

    index: int
    builder: JobBuilder
    values: dict[str, Any]
    list_name: str
    #: send no earlier than this (Unix seconds; 0: at once)
    send_at: float = 0.0
    #: the handles of the files it attaches (Uploads.add)
    attach: tuple[str, ...] = ()


def build_jobs(
    items: Sequence[Item], now: float, senders: SenderDomains, uploads: Uploads | None = None
) -> Built:
    """Render and validate each message as the producer does a row, attaching the files
    of ``uploads`` it names; a sender whose domain ``senders`` does not allow is refused
    as invalid."""
    out = Built([])
    # a message with files is built by its builder using the request's (one per builder)
    with_files: dict[int, JobBuilder] = {}
    for item in items:
        index = item.index
        builder = item.builder
        if item.attach and uploads is not None:
            if id(builder) not in with_files:
                with_files[id(builder)] = builder.using(uploads)
            builder = with_files[id(builder)]
        try:
            job = builder.build(
                Row(index + 1, item.values),
                now,
                list_name=item.list_name,
                check_from=senders.check,
                attach=item.attach,
            )
            job.not_before = item.send_at if item.send_at > now else 0.0
            out.jobs.append(job)
        except RejectedRow as exc:
            out.errors.append(
                error(index, API_FIELDS.get(exc.field.lower(), exc.field), exc.reason)
            )
        except UnicodeError:
            reason = "contains characters that cannot be encoded (lone surrogates)"
            out.errors.append(error(index, "body", reason))
    return out


class GroupCommit:
    """The jobs of concurrent requests go to the queue in one ``enqueue`` call (one
    transaction); each request's 202 still waits until its own jobs are durable."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.suppressions = suppression_list(queue)
        self._pending: list[
            tuple[list[Job], Mapping[str, bytes], asyncio.Future[list[Enqueued]]]
        ] = []
        self._task: asyncio.Task[None] | None = None

    async def enqueue(
        self, jobs: list[Job], blobs: Mapping[str, bytes] | None = None
    ) -> list[Enqueued]:
        """Queue ``jobs``, after the ``blobs`` (by digest) their attachments reference."""
        fut: asyncio.Future[list[Enqueued]] = asyncio.get_running_loop().create_future()
        self._pending.append((jobs, blobs or {}, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            jobs = [j for js, _, _ in batch for j in js]
            # each file once, however many requests of the batch carry it
            blobs = {d: data for _, bs, _ in batch for d, data in bs.items()}
            try:
                for digest, data in blobs.items():  # before the jobs that reference them
                    await self.queue.put_blob(digest, data)
                if self.suppressions is not None:  # one query per list for the batch
                    await screen(self.suppressions, jobs, time.time())
                results = await self.queue.enqueue(jobs)
            except Exception as exc:  # handed to every request of the batch
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for js, _, fut in batch:
                if not fut.done():
                    fut.set_result(results[start : start + len(js)])
                start += len(js)
