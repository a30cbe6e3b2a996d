"""JSON lines: one object per line; blank lines are skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from mailspool.errors import RejectedRow, SourceError
from mailspool.sources.base import Row, Source


class JSONLSource(Source):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._columns: dict[str, None] = {}

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def rows(self) -> Iterator[Row | RejectedRow]:
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        with f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()
                if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except (ValueError, UnicodeDecodeError) as exc:
                    yield RejectedRow("(row)", f"invalid JSON: {exc}", number)
                    continue
                if not isinstance(obj, dict):
                    yield RejectedRow("(row)", "each line must be a JSON object", number)
                    continue
                values = {
                    str(k).strip(): v.strip() if isinstance(v, str) else v for k, v in obj.items()
                }
                for k in values:
                    self._columns.setdefault(k, None)
                yield Row(number, values)
