"""JSON lines: one object per line; blank lines are skipped.

JSON can spell a lone surrogate (``"\\ud800"``), which is not text: it could not be encoded
into a message later, so a key or value holding one rejects its line here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailspool.errors import RejectedRow, SourceError
from mailspool.intake.sources.base import Row, Source


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    """A key as it can be shown and written to a UTF-8 file: a surrogate as \\udXXX."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def surrogate_path(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where the first lone surrogate in value is: the dotted path (``headers.X-A``,
    ``tags.0``) of the key or string that holds it, and which of the two; or None."""
    if isinstance(value, str):
        return None if _is_text(value) else (path, "value")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{_printable(k)}" if path else _printable(k)
            if not _is_text(k):
                return sub, "key"
            found = surrogate_path(v, sub)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = surrogate_path(v, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


class JSONLSource(Source):
    """The rows of the JSON lines file at ``path`` (.jsonl, .ndjson): each line an
    object whose keys are the columns; a row is numbered by its line."""

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
                # a surrogate comes from a \u escape, or from UTF-8 bytes json.loads lets
                # through (it decodes with surrogatepass): a plain ASCII line is never looked at
                if b"\\u" in line or not line.isascii():
                    bad = surrogate_path(values)
                    if bad is not None:
                        path, what = bad
                        reason = (
                            f"the {what} holds a lone surrogate (an unpaired \\ud800-\\udfff), "
                            "which is not text"
                        )
                        yield RejectedRow(path, reason, number)
                        continue
                for k in values:
                    self._columns.setdefault(k, None)
                yield Row(number, values)
