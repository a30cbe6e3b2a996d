"""The suppression list as CSV, for ``suppress import`` and ``suppress export``.

Columns ``address,list,reason,source,created_at,expires_at``, a header row first; only
``address`` is required on import, in any column order:

- ``address``: an address or a whole domain written ``@example.com``;
- ``list``: a list name, empty for a global entry;
- ``reason``: ``unsubscribed``, ``bounced``, ``complained`` or ``manual`` (empty: manual);
- ``source``: free text (empty: the importer's, ``import`` unless told);
- ``created_at``, ``expires_at``: ISO 8601 (``2025-03-01T12:00:00Z``; without a zone,
  UTC) or Unix seconds; empty: now, and never.

Export writes times in ISO 8601 UTC to the microsecond, and every cell through
:mod:`mailspool.intake.csvout`, so a domain entry is written ``'@example.com`` (a
spreadsheet would read ``@`` as a formula); import takes that ``'`` off again, and a
value that itself starts with ``'`` is written with one more, so that export then import
gives back the same entries.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO, TypeVar

from mailspool.errors import MailspoolError, RejectedRow, SourceError
from mailspool.intake import csvout
from mailspool.intake.sources.csv import CSVSource
from mailspool.message.optout import check_list_name, entry_key
from mailspool.queue.suppression import (
    ALL_LISTS,
    MAX_PAGE,
    MAX_SOURCE_CHARS,
    Reason,
    Scope,
    Suppression,
    SuppressionList,
)

T = TypeVar("T")
COLUMNS = ("address", "list", "reason", "source", "created_at", "expires_at")
# what csvout puts a ' before, and the ' this module doubles
_ESCAPED = (*csvout.FORMULA_START, "'")


def _unescape(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_ESCAPED) else cell


def _escape(value: str) -> str:
    return "'" + value if value.startswith("'") else value


def parse_time(text: str) -> float:
    """ISO 8601 (no zone: UTC) or Unix seconds, not before 1970; ValueError."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{text[:60]!r} is not a time: ISO 8601 (2025-03-01T12:00:00Z) or Unix seconds"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text[:60]!r} is not a time since 1970")
    return seconds


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _columns(path: Path, names: list[str]) -> dict[str, str]:
    """Our column name -> the name in the file; SourceError for an unknown column or no
    address column."""
    found: dict[str, str] = {}
    for name in names:
        ours = name.lower()
        if ours not in COLUMNS or ours in found:
            raise SourceError(
                f"{path}: unknown or repeated column {name!r}: the columns are {', '.join(COLUMNS)}"
            )
        found[ours] = name
    if "address" not in found:
        raise SourceError(f"{path}: no address column (the columns are {', '.join(COLUMNS)})")
    return found


def _parse(parse: Callable[[str], T], field: str, value: str, number: int) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise RejectedRow(field, str(exc), number) from None


def _entry(cells: dict[str, str], number: int, now: float, source: str) -> Suppression:
    """One row's entry, normalised; RejectedRow naming the first bad field."""
    address = _parse(entry_key, "address", cells["address"], number)
    list_name = _parse(check_list_name, "list", cells["list"], number) if cells["list"] else None
    reason = _parse(_reason, "reason", cells["reason"], number)
    origin = cells["source"] or source
    if len(origin) > MAX_SOURCE_CHARS:
        raise RejectedRow("source", f"longer than {MAX_SOURCE_CHARS} characters", number)
    created = (
        _parse(parse_time, "created_at", cells["created_at"], number)
        if cells["created_at"]
        else now
    )
    expires = (
        _parse(parse_time, "expires_at", cells["expires_at"], number)
        if cells["expires_at"]
        else None
    )
    if expires is not None and expires <= created:
        raise RejectedRow("expires_at", "must be later than created_at", number)
    return Suppression(address, list_name, reason, origin, created, expires)


def _reason(text: str) -> Reason:
    try:
        return Reason(text or Reason.MANUAL)
    except ValueError:
        raise ValueError(f"unknown reason {text[:40]!r}: one of {', '.join(Reason)}") from None


def iter_csv(
    path: Path, *, now: float | None = None, source: str = "import"
) -> Iterator[Suppression | RejectedRow]:
    """The file's entries in order, a row that is not valid as a RejectedRow (its row
    number as a spreadsheet shows it, the header being row 1). ``now`` is the time of an
    entry without ``created_at``; ``source`` the source of one without ``source``.
    SourceError when the file cannot be read or its header is wrong."""
    at = time.time() if now is None else now
    csv_source = CSVSource(path)
    rows = csv_source.rows()
    first = next(rows, None)  # reads the header
    columns = _columns(path, csv_source.columns)
    for row in rows if first is None else itertools.chain([first], rows):
        if isinstance(row, RejectedRow):
            yield row
            continue
        cells = {ours: _unescape(row.values.get(name, "")) for ours, name in columns.items()}
        cells = {c: cells.get(c, "") for c in COLUMNS}
        try:
            yield _entry(cells, row.number, at, source)
        except RejectedRow as rejected:
            yield rejected


def read_csv(
    path: Path, *, now: float | None = None, source: str = "import"
) -> tuple[list[Suppression], list[RejectedRow]]:
    """The file's valid entries and its rejected rows (see :func:`iter_csv`)."""
    entries: list[Suppression] = []
    rejects: list[RejectedRow] = []
    for item in iter_csv(path, now=now, source=source):
        if isinstance(item, RejectedRow):
            rejects.append(item)
        else:
            entries.append(item)
    return entries, rejects


class SuppressionWriter:
    """Writes entries to a new CSV file, a page at a time: ``with SuppressionWriter(path)
    as w: w.write(page)``. MailspoolError when the file cannot be created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        try:
            self._f: TextIO = csvout.create(path)
        except OSError as exc:
            raise MailspoolError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._w = csvout.SafeWriter(self._f)
        self._w.writerow(COLUMNS)

    def write(self, entries: Iterable[Suppression]) -> None:
        for e in entries:
            self._w.writerow(
                [
                    _escape(e.address),
                    e.list_name or "",
                    e.reason.value,
                    _escape(e.source),
                    format_time(e.created_at),
                    "" if e.expires_at is None else format_time(e.expires_at),
                ]
            )
            self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_csv(path: Path, entries: Iterable[Suppression]) -> int:
    """Write entries to ``path`` (replaced); returns how many."""
    with SuppressionWriter(path) as writer:
        writer.write(entries)
    return writer.count


async def export_csv(
    path: Path,
    suppressions: SuppressionList,
    list_name: str | Scope | None = ALL_LISTS,
    reason: Reason | None = None,
    page: int = 1000,
) -> int:
    """Write the entries of a suppression list (filtered as ``entries``) to ``path``, a
    page at a time; returns how many."""
    page = min(page, MAX_PAGE)
    with SuppressionWriter(path) as writer:
        after: tuple[str, str] | None = None
        while batch := await suppressions.entries(list_name, reason, page, after):
            writer.write(batch)
            after = batch[-1].position
    return writer.count
