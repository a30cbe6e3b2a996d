"""The source interface."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailspool.errors import RejectedRow


@dataclass(frozen=True, slots=True)
class Row:
    """One input record. ``number`` is what a user sees, one rule for every format
    (docs/cli.md "Input rows"): the Nth record of the file counting from its first line,
    as a spreadsheet numbers rows. For a CSV file the header is row 1 and a blank line
    counts; for JSON lines it is the line number. The rejects file, error messages and
    ``preview --row`` all use it."""

    number: int
    values: dict[str, Any]


class Source(abc.ABC):
    """An iterable of rows read lazily from a file, chosen by the file's extension
    (``SOURCES``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_path(cls, path: Path) -> Source:
        return cls(path)

    @abc.abstractmethod
    def rows(self) -> Iterator[Row | RejectedRow]:
        """Yield rows in order; a row that cannot be parsed is yielded as a RejectedRow."""

    @property
    @abc.abstractmethod
    def columns(self) -> list[str]:
        """The column names seen so far (all of them for CSV once iteration started)."""
