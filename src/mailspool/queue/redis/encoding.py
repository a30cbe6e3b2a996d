"""How the Redis queue encodes jobs and arguments for its scripts, and decodes the jobs
in their replies and in job hashes.

Messages are stored packed (mailspool.queue.packing): Redis holds everything in memory, and a
packed message is a fifth of the bytes. A job's ``meta`` ends with ``1`` when its message
is packed; jobs written before messages were packed have no such element and keep their
plain message.

A job's mailing list is the hash field ``list_name`` (absent in jobs written before
lists: the default list, ""); a job offered suppressed is stored so (the enqueue and
insert scripts' state argument).

The Redis job store (:mod:`mailspool.queue.redis.store`) keeps the same job hashes and
uses these helpers as well."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailspool.models import Job, State, attachment_rows, attachments_from_rows
from mailspool.queue.packing import read_stored, stored_form
from mailspool.queue.redis.scripts import MAX_LEASE_S, RECLAIM_IDLE_MS

#: what ``get`` reads of a job hash; ``meta`` is the JSON of what never changes (see _meta)
JOB_FIELDS = (
    "meta", "message", "state", "attempts", "ready_at", "updated_at", "last_reply",
    "dead_reason", "lease_owner", "list_name",
)  # fmt: skip


def float_arg(x: float) -> str:
    """A float as a script argument, exactly (Lua's tonumber reads it back)."""
    return repr(float(x))


def as_str(b: Any) -> str:
    """A value of a reply as text ("" for nil): replies are bytes, decode_responses off."""
    if b is None:
        return ""
    return b.decode() if isinstance(b, bytes) else str(b)


def _meta(j: Job, created: float) -> str:
    """What never changes about a job, as one JSON array: one field to write and read.
    The element after the creation time, 1, says that the message is stored packed; the
    recipient's timezone follows when it has one (jobs from before have neither)."""
    meta = [j.id, j.campaign, j.key, j.row, j.message_id, j.sender, list(j.recipients),
            j.body_offset, attachment_rows(j.attachments), created, 1]  # fmt: skip
    if j.timezone:
        meta.append(j.timezone)
    return json.dumps(meta, separators=(",", ":"))


#: how many arguments job_args gives a job
JOB_ARGS = 9


def job_args(j: Job, now: float) -> list[str | bytes]:
    """A new job's arguments to the enqueue and insert scripts (JOB_ARGS per job): id,
    campaign, row, created_at, not_before, meta, message, "suppressed" for a job offered
    so (stored final) or "", list name."""
    created = j.created_at or now
    suppressed = State.SUPPRESSED.value if j.state is State.SUPPRESSED else ""
    return [
        j.id, j.campaign, str(j.row), float_arg(created), float_arg(j.not_before or 0.0),
        _meta(j, created), stored_form(j.message), suppressed, j.list_name,
    ]  # fmt: skip


def _from_meta(meta: bytes, message: Any, **dynamic: Any) -> Job:
    jid, campaign, key, row, message_id, sender, rcpts, offset, atts, created, *packed = json.loads(
        meta
    )
    timezone = str(packed[1]) if len(packed) > 1 else ""
    message, unreadable = bytes(message or b""), ""
    if packed[:1] == [1] and message:  # a sent job's message is dropped
        message, unreadable = read_stored(message)
    return Job(
        id=jid,
        campaign=campaign,
        key=key,
        message_id=message_id,
        sender=sender,
        recipients=tuple(rcpts),
        message=message,
        unreadable=unreadable,
        row=row,
        body_offset=offset,
        attachments=attachments_from_rows(atts),
        created_at=created,
        timezone=timezone,
        **dynamic,
    )


def claimed_jobs(flat: Sequence[Any], owner: str, now: float) -> list[Job]:
    """Jobs from the claim script's flat reply (meta, message, attempts, last_reply,
    list_name each)."""
    return [
        _from_meta(
            flat[i],
            flat[i + 1],
            state=State.SENDING,
            attempts=int(flat[i + 2]),
            last_reply=as_str(flat[i + 3]),
            lease_owner=owner,
            updated_at=now,
            list_name=as_str(flat[i + 4]),
        )
        for i in range(0, len(flat), 5)
    ]


def job_from_hash(values: Sequence[Any]) -> Job:
    """The job from the values of its hash's JOB_FIELDS."""
    v = dict(zip(JOB_FIELDS, values, strict=True))
    state = State(as_str(v["state"]))
    return _from_meta(
        v["meta"],
        v["message"],
        state=state,
        attempts=int(v["attempts"] or 0),
        not_before=float(v["ready_at"] or 0) if state in (State.QUEUED, State.DEFERRED) else 0.0,
        updated_at=float(v["updated_at"] or 0),
        last_reply=as_str(v["last_reply"]),
        dead_reason=as_str(v["dead_reason"]),
        lease_owner=as_str(v["lease_owner"]),
        list_name=as_str(v["list_name"]),
    )


def idle_ms(lease: float) -> int:
    """The idle time that makes a pending entry reclaimable when ``lease`` runs out (see
    the Redis queue's docstring, Leases)."""
    lease_ms = max(1, round(min(lease, MAX_LEASE_S) * 1000))
    return RECLAIM_IDLE_MS - lease_ms
