"""CSV rows, streamed: UTF-8 with or without BOM, CRLF or LF, `,` `;` or tab detected.

Every physical line ends up in a row, in a rejected row whose reason names the lines it
covered, or is blank. A quote that is never closed would otherwise make the csv module
merge every following line into one field; here it is a rejected row naming those lines.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mailspool.errors import RejectedRow, SourceError
from mailspool.intake.sources.base import Row, Source

if TYPE_CHECKING:
    from _csv import Reader

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


def _line_breaks(text: str) -> int:
    """Line ends in text as the file is split into lines (newline=""): \\r\\n, \\r, \\n."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _where(number: int, first: int, last: int) -> str:
    """Where a rejected row is in the file, when its row number alone does not say."""
    if first != last:
        return f" ({_span(first, last)}: a quoted field spans them; is a quote stray or missing?)"
    return "" if first == number else f" ({_span(first, last)})"


class CSVSource(Source):
    """The rows of the CSV file at ``path`` (any extension but .jsonl and .ndjson): the
    first line names the columns; a row is numbered as a spreadsheet shows it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._columns: list[str] = []
        #: the physical lines (first, last) the item last yielded by rows() was read from;
        #: the header's before the first item
        self.lines = (0, 0)
        self._eof = False

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
            self._eof = False
            reader = csv.reader(self._lines(f), delimiter=delimiter, skipinitialspace=True)
            self._header(reader)
            yield from self._records(reader)

    def _lines(self, f: TextIO) -> Iterator[str]:
        """The file's lines, noting when they run out: the csv module ends a record at the
        end of the file only when a quoted field is still open."""
        yield from f
        self._eof = True

    def _header(self, reader: Reader) -> None:
        try:
            header = next(reader)
        except csv.Error as exc:
            raise SourceError(f"{self.path}: the header row is malformed CSV: {exc}") from None
        last = reader.line_num
        self.lines = (1, last)
        if self._eof:
            raise SourceError(
                f"{self.path}: a quoted field in the header row is never closed "
                f"(it runs from line {self._opened_on(header, last)} to the end of the file)"
            )
        if last > 1:
            raise SourceError(
                f"{self.path}: the header row spans lines 1-{last}: a quoted column name "
                "holds a line break (is a quote stray or missing?)"
            )
        self._columns = [h.strip() for h in header]
        names = self._columns
        if any(_has_surrogates(n) for n in names):
            raise SourceError(f"{self.path}: the header row is not valid UTF-8")
        if len(set(names)) != len(names) or "" in names:
            raise SourceError(
                f"{self.path}: header row has empty or repeated column names: {names}"
            )

    def _records(self, reader: Reader) -> Iterator[Row | RejectedRow]:
        names = self._columns
        width = len(names)
        number = 1
        last = reader.line_num
        while True:
            first = last + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                last = reader.line_num
                self.lines = (first, last)
                where = _where(number, first, last)
                yield RejectedRow("(row)", f"malformed CSV: {exc}{where}", number)
                continue
            number += 1
            last = reader.line_num
            self.lines = (first, last)
            if self._eof:
                # only an open quoted field makes the csv module end a record at the end
                opened = self._opened_on(record, last)
                verb = "was" if first == last else "were"
                reason = (
                    f"a quoted field opened on line {opened} is never closed; "
                    f"{_span(first, last)} {verb} not read as rows"
                )
                yield RejectedRow("(row)", reason, number)
                return
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if len(record) != width:
                where = _where(number, first, last)
                reason = f"expected {width} fields as in the header, found {len(record)}"
                yield RejectedRow("(row)", reason + where, number)
                continue
            values = dict(zip(names, map(str.strip, record), strict=True))
            # an undecodable byte became a lone surrogate, never ASCII: one C call checks
            # the common row, and only a row with other characters is looked at closely
            if not "".join(record).isascii():
                bad = next((n for n, v in values.items() if _has_surrogates(v)), None)
                if bad is not None:
                    where = _where(number, first, last)
                    yield RejectedRow(bad, f"not valid UTF-8{where}", number)
                    continue
            yield Row(number, values)

    @staticmethod
    def _opened_on(record: list[str], last: int) -> int:
        """The line where the quoted field still open at the end of the file began: it is
        the record's last field, and holds every line end after its opening quote."""
        field = record[-1] if record else ""
        breaks = _line_breaks(field)
        return last - breaks + (1 if field.endswith(("\n", "\r")) else 0)
