"""Suppression lists as CSV: export then import gives the same entries, cells never start
like a formula, and every bad row is reported with its row number."""

from __future__ import annotations

import csv
import string
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailspool.errors import RejectedRow, SourceError
from mailspool.intake.csvout import FORMULA_START
from mailspool.intake.suppression_csv import (
    COLUMNS,
    export_csv,
    format_time,
    parse_time,
    read_csv,
    write_csv,
)
from mailspool.queue.suppression import (
    MemorySuppressionList,
    Reason,
    Suppression,
    normalized,
)

T0 = 1_700_000_000.0
NOW = 1_800_000_000.0


def cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_export_then_import_gives_the_same_entries(tmp_path: Path) -> None:
    entries = [
        Suppression("@example.com", None, Reason.MANUAL, "=cmd|' /C calc'!A0", T0),
        Suppression("-ann@example.com", "news", Reason.UNSUBSCRIBED, "unsubscribe:c1", T0 + 0.5),
        Suppression("'bob@example.com", None, Reason.BOUNCED, "'quoted", T0, T0 + 86_400),
        Suppression("+carl@example.org", "offers", Reason.COMPLAINED, "", T0 + 1e-6, None),
        Suppression("'=dan@example.org", "news", Reason.MANUAL, "@import", T0, T0 + 1),
    ]
    path = tmp_path / "out.csv"
    assert write_csv(path, entries) == 5
    back, rejects = read_csv(path, now=NOW, source="import")
    assert rejects == []
    # an empty source reads back as the importer's
    assert back == [*entries[:3], replace(entries[3], source="import"), entries[4]]
    for row in cells(path):
        for cell in row:
            assert not cell.startswith(FORMULA_START), cell


def test_the_export_as_a_spreadsheet_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_csv(
        path,
        [
            Suppression("@example.com", "news", Reason.MANUAL, "api", T0, T0 + 3600),
            Suppression("ann@example.com", None, Reason.UNSUBSCRIBED, "unsubscribe:c1", T0),
        ],
    )
    assert cells(path) == [
        list(COLUMNS),
        ["'@example.com", "news", "manual", "api", "2023-11-14T22:13:20Z", "2023-11-14T23:13:20Z"],
        ["ann@example.com", "", "unsubscribed", "unsubscribe:c1", "2023-11-14T22:13:20Z", ""],
    ]


def test_an_import_needs_only_addresses_and_takes_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "Address\nAnn@Bücher.example\n\n@EXAMPLE.org\n")
    entries, rejects = read_csv(path, now=NOW, source="import:in.csv")
    assert rejects == []
    assert entries == [
        Suppression("ann@xn--bcher-kva.example", None, Reason.MANUAL, "import:in.csv", NOW),
        Suppression("@example.org", None, Reason.MANUAL, "import:in.csv", NOW),
    ]


def test_columns_in_any_order_and_times_as_iso_or_seconds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        "expires_at;reason;address;list;created_at\n"
        "2030-01-01T00:00:00;bounced;ann@example.com;news;1700000000\n"
        ";complained;bob@example.com;;2023-11-14T23:13:20+01:00\n",
    )
    entries, rejects = read_csv(path, now=NOW)
    assert rejects == []
    assert entries == [
        Suppression("ann@example.com", "news", Reason.BOUNCED, "import", T0, 1_893_456_000.0),
        Suppression("bob@example.com", None, Reason.COMPLAINED, "import", T0, None),
    ]


def test_every_bad_row_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.csv",
        "address,list,reason,source,created_at,expires_at\n"
        "ann@example.com,news,unsubscribed,,,\n"  # row 2: fine
        "not an address,news,manual,,,\n"  # 3
        "bob@example.com,news,resigned,,,\n"  # 4
        "carl@example.com,bad list,manual,,,\n"  # 5
        "dan@example.com,,manual,,yesterday,\n"  # 6
        "eve@example.com,,manual,,1700000000,1600000000\n"  # 7
        "fay@example.com,,manual,,,nan\n"  # 8
        "gil@example.com,,manual\n"  # 9: too few fields
        f"hal@example.com,,manual,{'x' * 201},,\n"  # 10
        "@,,,,,\n"  # 11
        "ivy@example.com,,,,,\n",  # 12: fine
    )
    entries, rejects = read_csv(path, now=NOW)
    assert [e.address for e in entries] == ["ann@example.com", "ivy@example.com"]
    assert [(r.row, r.field) for r in rejects] == [
        (3, "address"),
        (4, "reason"),
        (5, "list"),
        (6, "created_at"),
        (7, "expires_at"),
        (8, "expires_at"),
        (9, "(row)"),
        (10, "source"),
        (11, "address"),
    ]
    assert "resigned" in rejects[1].reason and "unsubscribed" in rejects[1].reason


@pytest.mark.parametrize(
    "header", ["email\n", "address,lists\n", "address,Address\n", "list,reason\n"]
)
def test_a_wrong_header_stops_the_import(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "in.csv", header + "ann@example.com\n")
    with pytest.raises(SourceError):
        read_csv(path)


def test_an_unreadable_file_stops_the_import(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        read_csv(tmp_path / "missing.csv")
    with pytest.raises(SourceError):
        read_csv(write(tmp_path / "empty.csv", ""))


def test_times() -> None:
    assert parse_time("1700000000.5") == T0 + 0.5
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T22:13:20") == T0  # no zone: UTC
    assert format_time(T0) == "2023-11-14T22:13:20Z"
    for bad in ("", "inf", "-1", "tomorrow", "2023-13-01"):
        with pytest.raises(ValueError):
            parse_time(bad)


async def test_export_pages_through_a_list(tmp_path: Path) -> None:
    s = MemorySuppressionList()
    await s.add(
        Suppression(f"u{i:03d}@example.com", "news" if i % 2 else None, Reason.MANUAL, "t", T0)
        for i in range(250)
    )
    path = tmp_path / "all.csv"
    assert await export_csv(path, s, page=100) == 250
    entries, rejects = read_csv(path)
    assert rejects == [] and entries == await s.entries(limit=1000)
    assert await export_csv(tmp_path / "news.csv", s, list_name="news", page=7) == 125
    assert await export_csv(tmp_path / "global.csv", s, list_name=None) == 125


ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
LOCAL = st.text(alphabet=ATEXT, min_size=1, max_size=12)
SOURCE = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(LOCAL, st.sampled_from([None, "news"]), st.sampled_from(list(Reason)), SOURCE),
        max_size=8,
    )
)
def test_any_entries_survive_export_and_import(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str | None, Reason, str]]
) -> None:
    entries = []
    for local, list_name, reason, source in rows:
        try:
            e = normalized(Suppression(f"{local}@example.com", list_name, reason, source, T0))
        except ValueError:
            continue  # e.g. two dots in a row
        if e.source.strip() == e.source and e.source:  # the reader strips cells
            entries.append(e)
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    write_csv(path, entries)
    back, rejects = read_csv(path, now=NOW)
    assert rejects == [] and back == entries
    assert all(not c.startswith(FORMULA_START) for row in cells(path) for c in row)


def test_rejected_rows_are_rejected_row_errors(tmp_path: Path) -> None:
    _, rejects = read_csv(write(tmp_path / "in.csv", "address\nnobody\n"))
    assert isinstance(rejects[0], RejectedRow)
    assert str(rejects[0]).startswith("row 2: address:")
