"""Row sources: each yields (row number, columns) pairs, or a RejectedRow for a row that
cannot be parsed, one at a time, in constant memory."""

from __future__ import annotations

from pathlib import Path

from mailspool.errors import ConfigError
from mailspool.intake.sources.base import Row, Source
from mailspool.intake.sources.csv import CSVSource
from mailspool.intake.sources.jsonl import JSONLSource
from mailspool.urls import Plugins

__all__ = ["SOURCES", "CSVSource", "JSONLSource", "Row", "Source", "open_source"]

#: sources by file extension; any other extension is read as CSV
SOURCES: Plugins[Source] = Plugins(
    "input file",
    {
        ".csv": "mailspool.intake.sources.csv:CSVSource",
        ".jsonl": "mailspool.intake.sources.jsonl:JSONLSource",
        ".ndjson": "mailspool.intake.sources.jsonl:JSONLSource",
    },
    "use a CSV file, or JSON lines (.jsonl)",
)


def open_source(path: str | Path) -> Source:
    """Pick the source by file extension: .jsonl/.ndjson are JSON lines, anything else CSV."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        raise ConfigError(
            f"{p}: a .json file is not supported; use one JSON object per line (.jsonl)"
        )
    return SOURCES.get(suffix if suffix in SOURCES else ".csv").from_path(p)
