"""Row sources: each yields (row number, columns) pairs, or a RejectedRow for a row that
cannot be parsed, one at a time, in constant memory."""

from __future__ import annotations

from pathlib import Path

from mailspool.errors import ConfigError
from mailspool.intake.sources.base import Row, Source
from mailspool.intake.sources.csv import CSVSource
from mailspool.intake.sources.jsonl import JSONLSource

__all__ = ["CSVSource", "JSONLSource", "Row", "Source", "open_source"]


def open_source(path: str | Path) -> Source:
    """Pick the source by file extension: .jsonl/.ndjson are JSON lines, anything else CSV."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JSONLSource(p)
    if suffix == ".json":
        raise ConfigError(
            f"{p}: a .json file is not supported; use one JSON object per line (.jsonl)"
        )
    return CSVSource(p)
