"""The rejects file: one CSV line (row, field, reason) per row that was not queued."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake import csvout


class Rejects:
    """The rejects CSV at ``path``, created on the first rejected row (a run without
    one leaves no file); its cells are safe to open in a spreadsheet (csvout.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: TextIO | None = None
        self._w: csvout.SafeWriter | None = None

    def add(self, err: RejectedRow) -> None:
        if self._w is None:
            try:
                self._f = csvout.create(self.path)
            except OSError as exc:
                raise MailspoolError(
                    f"cannot write the rejects file {self.path}: {exc.strerror or exc}"
                ) from exc
            self._w = csvout.SafeWriter(self._f)
            self._w.writerow(["row", "field", "reason"])
        # field and reason can quote the input: the writer neutralises formula cells
        self._w.writerow([err.row, err.field, err.reason])

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    @property
    def written(self) -> bool:
        """Whether a row was rejected (and the file created)."""
        return self._w is not None
