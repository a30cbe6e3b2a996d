"""``mailspool inbound ingest PATH...``: returned mail that landed in a mailbox (bounces,
complaints, unsubscribe requests), read from files and applied to the queue's jobs and
suppression list as :func:`mailspool.inbound.handle` does.

A PATH is a Maildir (a directory with ``cur``, ``new`` and ``tmp``: the messages of
``new`` and ``cur``), a directory of ``.eml`` files, an mbox file (it starts with a
``From`` line) or a file holding one message. The address a message was delivered to
is read from its ``Delivered-To``, ``X-Original-To`` or ``Envelope-To`` header, which
mailbox deliveries add: a VERP address there names its job. ``--imap URL`` reads an
IMAP mailbox instead (cli/inbound_imap.py).
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import mailbox
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.cli.inbound_imap import mailbox_settings, read_mailbox
from mailspool.config import Settings
from mailspool.errors import ConfigError
from mailspool.inbound import (
    Action,
    Handled,
    Report,
    SoftBouncePolicy,
    is_unsubscribe_request,
)
from mailspool.inbound.receive import receive
from mailspool.message.verp import ReturnPath
from mailspool.queue.returns import clean_text
from mailspool.wiring import load_return_path, open_queue

#: the headers a mailbox delivery records the envelope recipient in, in the order read
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To")
#: the strongest action over a message's recipients is the message's
STRENGTH = {Action.UNMATCHED: 0, Action.COUNTED: 1, Action.SUPPRESSED: 2}
MAILDIR_PARTS = ("new", "cur")


class Unreadable(Exception):
    """A path that could not be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message read from a path: where (``file``; ``position``: 1-based in an mbox
    file, else 1) and its bytes."""

    file: str
    position: int
    data: bytes


def _why(exc: OSError | mailbox.Error) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or repr(exc)


def _read_file(path: Path) -> Iterator[Message]:
    try:
        with path.open("rb") as f:
            start = f.read(5)
        if start != b"From ":
            yield Message(str(path), 1, path.read_bytes())
            return
        box = mailbox.mbox(path, create=False)
        try:
            for n, key in enumerate(box.keys(), 1):
                yield Message(str(path), n, box.get_bytes(key))
        finally:
            box.close()
    except (OSError, mailbox.Error) as exc:
        raise Unreadable(f"cannot read {path}: {_why(exc)}") from None


def messages(path: Path) -> Iterator[Message | Unreadable]:
    """The messages of one PATH given on the command line, in order; an
    :class:`Unreadable` for each file (or the path) that cannot be read."""
    try:
        if not path.exists():
            raise Unreadable(f"cannot read {path}: no such file or directory")
        if path.is_dir():
            if all((path / part).is_dir() for part in ("cur", "new", "tmp")):
                files = [
                    f
                    for part in MAILDIR_PARTS
                    for f in sorted((path / part).iterdir())
                    if not f.name.startswith(".")
                ]
            else:
                files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".eml")
        else:
            files = [path]
    except Unreadable as exc:
        yield exc
        return
    except OSError as exc:
        yield Unreadable(f"cannot read {path}: {_why(exc)}")
        return
    for f in files:
        try:
            yield from _read_file(f)
        except Unreadable as exc:
            yield exc


def envelope_to(
    data: bytes, return_path: ReturnPath | None, unsubscribe_to: Collection[str]
) -> str | None:
    """The address ``data`` was delivered to, from the headers a mailbox delivery adds:
    the first that is a VERP address of ``return_path`` or one of ``unsubscribe_to``,
    else the first found."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        found = [str(v).strip() for h in ENVELOPE_HEADERS for v in headers.get_all(h) or []]
    except Exception:  # garbage: parse_report says what it is
        return None
    found = [v for v in found if v]
    for value in found:
        if is_unsubscribe_request(value, unsubscribe_to) or (
            return_path is not None and return_path.read(value.strip("<>")) is not None
        ):
            return value
    return found[0] if found else None


def row(message: Message, report: Report, handled: list[Handled]) -> dict[str, Any]:
    """What ``--json`` prints for one message."""
    action = max((h.action for h in handled), key=STRENGTH.__getitem__, default=Action.UNMATCHED)
    job = next((h.job for h in handled if h.job is not None), None)
    return {
        "file": message.file,
        "position": message.position,
        "kind": report.kind.value,
        "recipients": [
            {"address": b.address, "status": b.status, "permanent": b.permanent}
            for b in report.recipients
        ],
        "job": job,
        "action": action.value,
        "new": any(h.recorded for h in handled),
    }


def _safe(text: str) -> str:
    return clean_text(text, len(text))


def summary(r: dict[str, Any]) -> str:
    """The line printed for one message without ``--json``."""
    where = r["file"] if r["position"] == 1 else f"{r['file']} (message {r['position']})"
    recipients = ", ".join(
        f"{x['address']} {x['status'] or ('permanent' if x['permanent'] else 'temporary')}"
        for x in r["recipients"]
    )
    parts = [f"{_safe(where)}: {r['kind']}", r["action"]]
    if r["job"]:
        parts.append(f"job {r['job']}")
    if recipients:
        parts.append(_safe(recipients))
    if not r["new"]:
        parts.append("(already handled)")
    return "  ".join(parts)


async def ingest(args: argparse.Namespace, settings: Settings) -> ExitCode:
    if args.paths and "imap" in args.flags_given:  # MAILSPOOL_IMAP gives way to PATHs
        raise ConfigError("give PATHs or --imap, not both")
    if not args.paths and not settings.imap:
        raise ConfigError("give the PATHs to read, or --imap URL")
    mailbox = None if args.paths else mailbox_settings(settings)  # checked before the queue
    policy = SoftBouncePolicy(settings.soft_bounce_limit, settings.soft_bounce_window)
    return_path = load_return_path(settings)
    unsubscribe_to = frozenset(settings.unsubscribe_address)
    tally = dict.fromkeys(("messages", *(a.value for a in STRENGTH), "failed"), 0)
    code = ExitCode.OK
    async with open_queue(settings) as queue:

        async def apply(item: Message) -> None:
            report, handled = await receive(
                item.data,
                envelope_to=envelope_to(item.data, return_path, unsubscribe_to),
                store=queue, return_path=return_path, unsubscribe_to=unsubscribe_to,
                policy=policy, now=time.time(),
            )  # fmt: skip
            r = row(item, report, handled)
            tally["messages"] += 1
            tally[r["action"]] += 1
            print(json.dumps(r) if settings.json_output else summary(r), flush=True)

        if mailbox is not None:  # the mailbox of --imap (or MAILSPOOL_IMAP)
            code = await read_mailbox(
                mailbox, settings, lambda file, data: apply(Message(file, 1, data))
            )
        for path in args.paths:
            for item in messages(Path(path)):
                if isinstance(item, Unreadable):
                    tally["failed"] += 1
                    print(f"mailspool: {_safe(str(item))}", file=sys.stderr)
                    continue
                await apply(item)
    if code is ExitCode.USAGE:  # the mailbox could not be read: said so already
        return code
    total = (
        f"{tally['messages']} messages: {tally['suppressed']} suppressed,"
        f" {tally['counted']} counted, {tally['unmatched']} unmatched"
        + (f"; {tally['failed']} could not be read" if tally["failed"] else "")
    )
    print(total, file=sys.stderr if settings.json_output else sys.stdout)
    return ExitCode.SOME_FAILED if tally["failed"] else code


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    return await ingest(args, settings)
