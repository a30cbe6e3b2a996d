"""``mailspool suppress``: the suppression list kept in the queue's job store.

``add`` and ``remove`` take addresses and ``@domains``; without ``--list`` they act on
the global entries (suppressed on every list). ``list`` and ``export`` show every entry
unless ``--list`` or ``--global`` narrows them. ``import`` adds a CSV file's entries
(intake/suppression_csv.py), its rows without a list going to ``--list`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings, parse_expiry
from mailspool.errors import ConfigError, RejectedRow
from mailspool.intake.suppression_csv import export_csv, format_time, iter_csv
from mailspool.message.optout import check_list_name, entry_key
from mailspool.queue.suppression import ALL_LISTS, Reason, Scope, Suppression, SuppressionList
from mailspool.wiring import open_queue

#: entries added in one call to the backend while importing
IMPORT_BATCH = 5000
#: rejected rows of an import shown one by one; the rest are counted
SHOW_REJECTS = 20
#: where ``add`` entries come from (the source column)
CLI_SOURCE = "cli"

Action = Callable[[argparse.Namespace, SuppressionList], Awaitable[ExitCode]]


def expiry(text: str, now: float) -> float:
    """``--expires``: see :func:`mailspool.config.parse_expiry`; ConfigError naming it."""
    try:
        return parse_expiry(text, now)
    except ValueError as exc:
        raise ConfigError(f"--expires {text!r}: {exc}") from None


def list_name(args: argparse.Namespace) -> str | None:
    """``--list``, checked; None (the global entries) when not given."""
    if args.suppress_list is None:
        return None
    try:
        return check_list_name(args.suppress_list)
    except ValueError as exc:
        raise ConfigError(f"--list: {exc}") from None


def scope(args: argparse.Namespace) -> str | Scope | None:
    """What ``list`` and ``export`` show: one list's entries, the global ones, or all."""
    if args.global_only and args.suppress_list is not None:
        raise ConfigError("--list and --global: give one of them")
    if args.global_only:
        return None
    return ALL_LISTS if args.suppress_list is None else list_name(args)


def wanted_reason(args: argparse.Namespace) -> Reason | None:
    return None if args.reason is None else Reason(args.reason)


def check_addresses(values: list[str]) -> None:
    """ConfigError naming every value that is not an address or ``@domain``: the whole
    command is refused, so that nothing is half done."""
    bad = []
    for value in values:
        try:
            entry_key(value)
        except ValueError as exc:
            bad.append(f"  {value!r}: {exc}")
    if bad:
        raise ConfigError("not an address or @domain (nothing was changed):\n" + "\n".join(bad))


def shown(seconds: float) -> str:
    """A time as the text listing shows it: UTC, to the second."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(list_name: str | None) -> str:
    return "every list (global)" if list_name is None else f"list {list_name}"


async def add(args: argparse.Namespace, suppressions: SuppressionList) -> ExitCode:
    now = time.time()
    name = list_name(args)
    expires = None if args.expires is None else expiry(args.expires, now)
    entries = [
        Suppression(a, name, Reason(args.reason), CLI_SOURCE, now, expires) for a in args.addresses
    ]
    added = await suppressions.add(entries)
    until = "" if expires is None else f" until {shown(expires)}"
    print(f"suppressed {len(added)} on {describe(name)} ({args.reason}{until})")
    return ExitCode.OK


async def remove(args: argparse.Namespace, suppressions: SuppressionList) -> ExitCode:
    name = list_name(args)
    removed = await suppressions.remove(args.addresses, name)
    print(f"removed {removed} entries from {describe(name)}")
    if removed == 0:
        print(
            f"mailspool: none of those has an entry on {describe(name)}"
            " (`mailspool suppress list` shows where they are)",
            file=sys.stderr,
        )
        return ExitCode.SOME_FAILED
    return ExitCode.OK


def entry_json(e: Suppression, now: float) -> dict[str, Any]:
    return {
        "address": e.address,
        "list": e.list_name,
        "reason": e.reason.value,
        "source": e.source,
        "created_at": format_time(e.created_at),
        "expires_at": None if e.expires_at is None else format_time(e.expires_at),
        "active": e.active(now),
    }


async def show(
    args: argparse.Namespace, suppressions: SuppressionList, *, as_json: bool = False
) -> ExitCode:
    where, reason, now = scope(args), wanted_reason(args), time.time()
    after: tuple[str, str] | None = None
    count = 0
    if as_json:
        print("[", end="")
    while page := await suppressions.entries(where, reason, 1000, after):
        for e in page:
            if as_json:
                print(("," if count else "") + json.dumps(entry_json(e, now)), end="")
            else:
                expires = "" if e.expires_at is None else f"  until {shown(e.expires_at)}"
                lapsed = "" if e.active(now) else " (expired)"
                print(
                    f"{e.address}  {e.list_name or '(global)'}  {e.reason.value}"
                    f"  {e.source}  {shown(e.created_at)}{expires}{lapsed}"
                )
            count += 1
        after = page[-1].position
    if as_json:
        print("]")
    print(f"{count} entries", file=sys.stderr)
    return ExitCode.OK


async def import_csv(args: argparse.Namespace, suppressions: SuppressionList) -> ExitCode:
    path, name = Path(args.file), list_name(args)
    batch: list[Suppression] = []
    added = rejected = 0
    for item in iter_csv(path, source="import"):
        if isinstance(item, RejectedRow):
            rejected += 1
            if rejected <= SHOW_REJECTS:
                print(f"  row {item.row}: {item.field}: {item.reason}", file=sys.stderr)
            continue
        batch.append(replace(item, list_name=name) if item.list_name is None else item)
        if len(batch) >= IMPORT_BATCH:
            added += len(await suppressions.add(batch))
            batch = []
    if batch:
        added += len(await suppressions.add(batch))
    if rejected > SHOW_REJECTS:
        print(f"  ... and {rejected - SHOW_REJECTS} more rejected rows", file=sys.stderr)
    print(f"imported {added} entries from {path}; {rejected} rows rejected")
    return ExitCode.SOME_FAILED if rejected else ExitCode.OK


async def export(args: argparse.Namespace, suppressions: SuppressionList) -> ExitCode:
    where, reason = scope(args), wanted_reason(args)
    count = await export_csv(Path(args.file), suppressions, where, reason)
    print(f"exported {count} entries to {args.file}")
    return ExitCode.OK


ACTIONS: dict[str, Action] = {
    "add": add,
    "remove": remove,
    "import": import_csv,
    "export": export,
}


def check(args: argparse.Namespace) -> None:
    """What can be checked without the queue, checked first: a typo changes nothing."""
    if args.action in ("add", "remove"):
        check_addresses(args.addresses)
        list_name(args)
        if args.action == "add" and args.expires is not None:
            expiry(args.expires, time.time())
    elif args.action in ("list", "export"):
        scope(args)
    elif not Path(args.file).is_file():  # import
        raise ConfigError(f"{args.file}: no such file")


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    check(args)
    async with open_queue(settings) as queue:
        if args.action == "list":  # the one action that takes --json
            return await show(args, queue.suppressions, as_json=settings.json_output)
        return await ACTIONS[args.action](args, queue.suppressions)
