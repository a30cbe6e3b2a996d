"""CSV files mailspool writes, safe to open in a spreadsheet.

A cell that starts with ``=`` ``+`` ``-`` ``@``, a tab or a carriage return may be taken
for a formula (CSV injection); such a cell gets a leading ``'``, which spreadsheets show
as text. Cells are judged by content, whatever the column: text quoted from a row, a
column name or a reason can start with any of these.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

#: what makes a spreadsheet read a cell as a formula (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The cell's text, with a leading ``'`` when it would start like a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`safe_cell`."""

    def __init__(self, f: TextIO) -> None:
        self._w = csv.writer(f)

    def writerow(self, row: Iterable[object]) -> None:
        self._w.writerow([safe_cell(v) for v in row])


def create(path: Path) -> TextIO:
    """Open path for writing a CSV: UTF-8, line ends left to the writer, and a lone
    surrogate (from undecodable input) written as ``\\udcff`` rather than failing."""
    return path.open("w", newline="", encoding="utf-8", errors="backslashreplace")
