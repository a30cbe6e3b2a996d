"""CSV rows, streamed: UTF-8 with or without BOM, CRLF or LF, `,` `;` or tab detected."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mailspool.errors import RejectedRow, SourceError
from mailspool.sources.base import Row, Source

DELIMITERS = ",;\t"


def detect_delimiter(header_line: str) -> str:
    """The candidate that occurs most often in the header line, outside quotes."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class CSVSource(Source):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._columns: list[str] = []

    @property
    def columns(self) -> list[str]:
        return self._columns

    def rows(self) -> Iterator[Row | RejectedRow]:
        try:
            # surrogateescape: an undecodable byte rejects its row instead of ending the file
            f = self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        with f:
            first = f.readline()
            if not first.strip():
                raise SourceError(f"{self.path}: empty file, or no header row on the first line")
            delimiter = detect_delimiter(first)
            f.seek(0)
            if f.read(1) != "\ufeff":
                f.seek(0)
            reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
            header = next(reader)
            self._columns = [h.strip() for h in header]
            yield from self._records(reader)

    def _records(self, reader: Iterator[list[str]]) -> Iterator[Row | RejectedRow]:
        names = self._columns
        if any(_has_surrogates(n) for n in names):
            raise SourceError(f"{self.path}: the header row is not valid UTF-8")
        if len(set(names)) != len(names) or "" in names:
            raise SourceError(
                f"{self.path}: header row has empty or repeated column names: {names}"
            )
        width = len(names)
        number = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield RejectedRow("(row)", f"malformed CSV: {exc}", number)
                continue
            number += 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if len(record) != width:
                yield RejectedRow(
                    "(row)",
                    f"expected {width} fields as in the header, found {len(record)}",
                    number,
                )
                continue
            values = dict(zip(names, map(str.strip, record), strict=True))
            # an undecodable byte became a lone surrogate, never ASCII: one C call checks
            # the common row, and only a row with other characters is looked at closely
            if not "".join(record).isascii():
                bad = next((n for n, v in values.items() if _has_surrogates(v)), None)
                if bad is not None:
                    yield RejectedRow(bad, "not valid UTF-8", number)
                    continue
            yield Row(number, values)
