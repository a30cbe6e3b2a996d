"""Row sources: CSV and JSON lines, read as a stream."""

from __future__ import annotations

import inspect
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import ConfigError, RejectedRow, SourceError
from mailspool.intake.sources import CSVSource, JSONLSource, Row, open_source
from tests.support.paths import ROOT

SEED = Path("/work/shared/fixtures/seed-recipients.csv")
EXAMPLE = ROOT / "examples" / "recipients.csv"


def read(path: Path) -> list[Row | RejectedRow]:
    return list(open_source(path).rows())


def write(tmp_path: Path, data: bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def good(items: list[Row | RejectedRow]) -> list[tuple[int, dict[str, Any]]]:
    return [(r.number, r.values) for r in items if isinstance(r, Row)]


def bad(items: list[Row | RejectedRow]) -> list[tuple[int | None, str, str]]:
    return [(r.row, r.field, r.reason) for r in items if isinstance(r, RejectedRow)]


# -- CSV: streaming ----------------------------------------------------------------


def big_csv(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write("Name, Email\n")
        for i in range(rows):
            f.write(f"person number {i}, person.{i}@example.com\n")
    return path


def test_csv_rows_is_a_generator(tmp_path: Path) -> None:
    path = write(tmp_path, b"Name,Email\na,a@example.com\n")
    assert inspect.isgenerator(CSVSource(path).rows())


def test_csv_first_row_does_not_read_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = big_csv(tmp_path, 100_000)
    size = path.stat().st_size
    assert size > 4_000_000
    opened: list[Any] = []
    real_open = Path.open

    def spy_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        f = real_open(self, *args, **kwargs)
        opened.append(f)
        return f

    monkeypatch.setattr(Path, "open", spy_open)
    tracemalloc.start()
    try:
        rows = CSVSource(path).rows()
        first = next(rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024 < size
    assert isinstance(first, Row)
    assert first.values == {"Name": "person number 0", "Email": "person.0@example.com"}
    (f,) = opened
    # the text layer reads ahead a chunk at a time, never the whole file
    assert f.buffer.tell() < 256 * 1024
    assert inspect.isgenerator(rows)
    rows.close()
    assert f.closed


def test_csv_memory_stays_constant_over_a_large_file(tmp_path: Path) -> None:
    path = big_csv(tmp_path, 150_000)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = 0
        last = None
        for item in CSVSource(path).rows():
            assert isinstance(item, Row)
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 150_000
    assert last is not None and last.number == 150_001
    assert peak < 1_000_000 < size


# -- CSV: encodings, line endings, delimiters -----------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_csv_utf8_bom_and_line_endings(tmp_path: Path, bom: bytes, eol: bytes) -> None:
    data = bom + eol.join(
        [b"Name,Email", "Zoë,zoe@example.com".encode(), b"Al,al@example.com", b""]
    )
    src = CSVSource(write(tmp_path, data))
    items = list(src.rows())
    assert src.columns == ["Name", "Email"]
    assert good(items) == [
        (2, {"Name": "Zoë", "Email": "zoe@example.com"}),
        (3, {"Name": "Al", "Email": "al@example.com"}),
    ]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_csv_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    # the other candidates appear inside values and must stay there
    text = delimiter.join(["Name", "Email", "Note"]) + "\n"
    text += delimiter.join(["Ann", "ann@example.com", '"a, b; c"']) + "\n"
    items = read(write(tmp_path, text.encode()))
    assert good(items) == [(2, {"Name": "Ann", "Email": "ann@example.com", "Note": "a, b; c"})]


def test_csv_tsv_extension_is_read_as_csv(tmp_path: Path) -> None:
    items = read(write(tmp_path, b"Name\tEmail\nAnn\tann@example.com\n", "list.tsv"))
    assert good(items) == [(2, {"Name": "Ann", "Email": "ann@example.com"})]


def test_csv_quoted_fields_with_commas_and_newlines(tmp_path: Path) -> None:
    data = (
        b"Name,Email,Address\n"
        b'"Smith, John",john@example.com,"1 Main St\nSpringfield"\n'
        b'"Say ""hi""",say@example.com,plain\n'
        b"Last,last@example.com,x\n"
    )
    items = read(write(tmp_path, data))
    assert good(items) == [
        (
            2,
            {
                "Name": "Smith, John",
                "Email": "john@example.com",
                "Address": "1 Main St\nSpringfield",
            },
        ),
        (3, {"Name": 'Say "hi"', "Email": "say@example.com", "Address": "plain"}),
        (4, {"Name": "Last", "Email": "last@example.com", "Address": "x"}),
    ]


def test_csv_header_names_and_values_are_trimmed(tmp_path: Path) -> None:
    data = b' Name ,  Email \n  john  ,   john@example.com  \n mary, "Mary Ann" \n'
    src = CSVSource(write(tmp_path, data))
    items = list(src.rows())
    assert src.columns == ["Name", "Email"]
    assert good(items)[0] == (2, {"Name": "john", "Email": "john@example.com"})
    assert good(items)[1][1]["Email"] == "Mary Ann"


def test_csv_demo_format_from_the_seed_fixture() -> None:
    """The demo's own file: ``Name, Email`` with a space after every comma."""
    path = SEED if SEED.exists() else EXAMPLE
    if SEED.exists():
        assert SEED.read_bytes() == EXAMPLE.read_bytes(), "examples/ is a copy of the fixture"
    src = CSVSource(path)
    items = list(src.rows())
    assert src.columns == ["Name", "Email"]
    assert bad(items) == []
    rows = good(items)
    assert len(rows) == 106
    assert rows[0] == (2, {"Name": "john", "Email": "john@example.com"})
    assert rows[1] == (3, {"Name": "mary", "Email": "mary@example.com"})
    assert [n for n, _ in rows] == list(range(2, 108))
    for _, values in rows:
        assert set(values) == {"Name", "Email"}
        for v in values.values():
            assert v == v.strip() and v
        assert "@" in values["Email"]
    assert len({v["Email"] for _, v in rows}) == 106


# -- CSV: bad rows ----------------------------------------------------------------


def test_csv_row_with_wrong_field_count_is_rejected_and_others_go_on(tmp_path: Path) -> None:
    data = b"Name,Email\na,a@example.com\nb,b@example.com,extra\nc\nd,d@example.com\n"
    items = read(write(tmp_path, data))
    assert good(items) == [
        (2, {"Name": "a", "Email": "a@example.com"}),
        (5, {"Name": "d", "Email": "d@example.com"}),
    ]
    rejected = bad(items)
    assert [(row, field) for row, field, _ in rejected] == [(3, "(row)"), (4, "(row)")]
    assert "expected 2 fields" in rejected[0][2] and "found 3" in rejected[0][2]
    assert "found 1" in rejected[1][2]


def test_csv_invalid_utf8_rejects_only_that_row(tmp_path: Path) -> None:
    data = (
        b"Name,Email\nok,ok@example.com\nbad\xff\xfename,bad@example.com\nafter,after@example.com\n"
    )
    items = read(write(tmp_path, data))
    assert good(items) == [
        (2, {"Name": "ok", "Email": "ok@example.com"}),
        (4, {"Name": "after", "Email": "after@example.com"}),
    ]
    assert bad(items) == [(3, "Name", "not valid UTF-8")]


def test_csv_invalid_utf8_in_the_header_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"Na\xffme,Email\nok,ok@example.com\n")
    with pytest.raises(SourceError, match="header"):
        read(path)


def test_csv_blank_lines_are_skipped_but_keep_row_numbers(tmp_path: Path) -> None:
    data = b"Name,Email\r\n\r\na,a@example.com\r\n\r\nb,b@example.com"
    items = read(write(tmp_path, data))
    assert good(items) == [
        (3, {"Name": "a", "Email": "a@example.com"}),
        (5, {"Name": "b", "Email": "b@example.com"}),
    ]
    assert bad(items) == []


def test_csv_oversized_field_rejects_the_row_only(tmp_path: Path) -> None:
    data = b'Name,Email\n"' + b"x" * 200_000 + b'",a@example.com\nb,b@example.com\n'
    items = read(write(tmp_path, data))
    assert [(row, field) for row, field, _ in bad(items)] == [(2, "(row)")]
    assert good(items) == [(3, {"Name": "b", "Email": "b@example.com"})]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\n\nName\n", "empty"),
        (b"Email,Email\na,b\n", "repeated"),
        (b"Name,,Email\na,b,c\n", "empty or repeated"),
    ],
)
def test_csv_bad_header_is_a_file_error(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        read(write(tmp_path, data))


def test_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="cannot read"):
        read(tmp_path / "nope.jsonl")


# -- CSV: quotes that are never closed or stray ------------------------------------


def covered(src: CSVSource) -> list[tuple[tuple[int, int], Row | RejectedRow]]:
    """Each item with the physical lines it was read from."""
    return [(src.lines, item) for item in src.rows()]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("final", [True, False], ids=["final-eol", "no-final-eol"])
def test_csv_unclosed_quote_rejects_the_lines_it_ran_over(
    tmp_path: Path, eol: bytes, final: bool
) -> None:
    lines = [b"Name,Email", b"a,a@example.com", b'"b,b@example.com', b"c,c@example.com"]
    lines.append(b"d,d@example.com")
    data = eol.join(lines) + (eol if final else b"")
    src = CSVSource(write(tmp_path, data))
    items = covered(src)
    assert [(span, r.number) for span, r in items if isinstance(r, Row)] == [((2, 2), 2)]
    assert good([r for _, r in items]) == [(2, {"Name": "a", "Email": "a@example.com"})]
    ((span, rejected),) = [(span, r) for span, r in items if isinstance(r, RejectedRow)]
    assert span == (3, 5)
    assert (rejected.row, rejected.field) == (3, "(row)")
    assert rejected.reason == (
        "a quoted field opened on line 3 is never closed; lines 3-5 were not read as rows"
    )


def test_csv_unclosed_quote_names_the_line_it_opened_on(tmp_path: Path) -> None:
    # row 3 starts with a closed quoted value over lines 3-4, then opens one on line 4
    data = b'Name,Email\n"a\nb",a@example.com\n"c\r\nd","c@example.com\r\ne\r\n'
    src = CSVSource(write(tmp_path, data))
    items = covered(src)
    assert [(span, r.number) for span, r in items if isinstance(r, Row)] == [((2, 3), 2)]
    reason = "a quoted field opened on line 5 is never closed; lines 4-6 were not read as rows"
    assert bad([r for _, r in items]) == [(3, "(row)", reason)]
    assert items[-1][0] == (4, 6)


def test_csv_unclosed_quote_on_the_last_line(tmp_path: Path) -> None:
    items = read(write(tmp_path, b'Name,Email\na,a@example.com\nb,"b@example.com'))
    assert good(items) == [(2, {"Name": "a", "Email": "a@example.com"})]
    assert bad(items) == [
        (3, "(row)", "a quoted field opened on line 3 is never closed; line 3 was not read as rows")
    ]


def test_csv_stray_quote_closed_later_names_the_lines_of_its_row(tmp_path: Path) -> None:
    data = (
        b"Name,Email\n"
        b"a,a@example.com\n"
        b'"b,b@example.com\n'  # opens a quoted value ...
        b"c,c@example.com\n"
        b'd,"d@example.com"\n'  # ... which the next quote closes: one field over lines 3-5
        b"e,e@example.com\n"
    )
    src = CSVSource(write(tmp_path, data))
    items = covered(src)
    assert good([r for _, r in items]) == [
        (2, {"Name": "a", "Email": "a@example.com"}),
        (4, {"Name": "e", "Email": "e@example.com"}),
    ]
    ((span, rejected),) = [(span, r) for span, r in items if isinstance(r, RejectedRow)]
    assert span == (3, 5)
    assert rejected.row == 3
    assert rejected.reason.startswith("expected 2 fields as in the header, found 1 (lines 3-5")
    assert "quote" in rejected.reason
    # the row after it sits on line 6: the span keeps row numbers and lines apart
    assert items[-1][0] == (6, 6)


def test_csv_rejected_row_names_its_line_when_it_differs_from_its_number(
    tmp_path: Path,
) -> None:
    # a legitimate value with a line break makes row 2 two lines long; row 3 is on line 4
    data = b'Name,Email\n"Smith\nJohn",john@example.com\nbad,row,here\nok,ok@example.com\n'
    items = read(write(tmp_path, data))
    assert good(items) == [
        (2, {"Name": "Smith\nJohn", "Email": "john@example.com"}),
        (4, {"Name": "ok", "Email": "ok@example.com"}),
    ]
    assert bad(items) == [(3, "(row)", "expected 2 fields as in the header, found 3 (line 4)")]


def test_csv_oversized_unclosed_quote_rejects_its_lines_and_reads_on(tmp_path: Path) -> None:
    # the csv module stops a field at 128 KiB: the lines up to there are one rejected row,
    # and reading goes on after them
    body = b"".join(b"r%d,r%d@example.com\n" % (i, i) for i in range(20_000))
    data = b'Name,Email\na,a@example.com\n"b,b@example.com\n' + body
    src = CSVSource(write(tmp_path, data))
    items = covered(src)
    (rejected,) = [(span, r) for span, r in items if isinstance(r, RejectedRow)]
    (first, last), err = rejected
    assert (first, err.row) == (3, 3)
    assert 3 < last < 20_003
    assert "field limit" in err.reason and f"lines 3-{last}" in err.reason
    rows = [(span, r) for span, r in items if isinstance(r, Row)]
    assert rows[0][0] == (2, 2)
    assert [span[0] for span, _ in rows[1:]] == list(range(last + 1, 20_004))
    assert rows[-1][1].values == {"Name": "r19999", "Email": "r19999@example.com"}


def test_csv_header_with_an_unclosed_quote_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path, b'"Name,Email\na,a@example.com\n')
    with pytest.raises(SourceError, match="quoted field in the header row is never closed"):
        read(path)


def test_csv_header_spanning_lines_is_a_file_error(tmp_path: Path) -> None:
    # a stray quote would otherwise take the next lines in as column names
    path = write(tmp_path, b'"Name,Email\na,"a@example.com\nb,b@example.com\n')
    with pytest.raises(SourceError, match="header row spans lines 1-2"):
        read(path)


# -- JSON lines -------------------------------------------------------------------


def test_jsonl_objects_bad_lines_and_blank_lines(tmp_path: Path) -> None:
    data = (
        b'{"to": "a@example.com", "n": 1}\n'
        b"\n"
        b"   \n"
        b"{not json}\n"
        b"[1, 2]\n"
        b'"a string"\n'
        b'{"to": " b@example.com ", "tags": ["x"]}\r\n'
        b'{"to": "c@\xffexample.com"}\n'
        b'{"to": "d@example.com"}'
    )
    src = JSONLSource(write(tmp_path, data, "in.jsonl"))
    items = list(src.rows())
    assert good(items) == [
        (1, {"to": "a@example.com", "n": 1}),
        (7, {"to": "b@example.com", "tags": ["x"]}),
        (9, {"to": "d@example.com"}),
    ]
    rejected = bad(items)
    assert [(row, field) for row, field, _ in rejected] == [
        (4, "(row)"),
        (5, "(row)"),
        (6, "(row)"),
        (8, "(row)"),
    ]
    assert rejected[0][2].startswith("invalid JSON")
    assert rejected[1][2] == rejected[2][2] == "each line must be a JSON object"
    assert rejected[3][2].startswith("invalid JSON")
    assert src.columns == ["to", "n", "tags"]


def test_jsonl_bom_on_first_line(tmp_path: Path) -> None:
    items = read(write(tmp_path, b'\xef\xbb\xbf{"to": "a@example.com"}\n', "in.ndjson"))
    assert good(items) == [(1, {"to": "a@example.com"})]


def test_jsonl_rows_is_a_generator(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"a": 1}\n', "in.jsonl")
    assert inspect.isgenerator(JSONLSource(path).rows())


def test_open_source_chooses_by_extension(tmp_path: Path) -> None:
    assert isinstance(open_source(tmp_path / "a.jsonl"), JSONLSource)
    assert isinstance(open_source(tmp_path / "a.NDJSON"), JSONLSource)
    assert isinstance(open_source(tmp_path / "a.csv"), CSVSource)
    assert isinstance(open_source(tmp_path / "a.txt"), CSVSource)
    with pytest.raises(ConfigError, match="jsonl"):
        open_source(tmp_path / "a.json")


def test_jsonl_lone_surrogate_rejects_its_line_naming_the_field(tmp_path: Path) -> None:
    data = (
        b'{"to": "a@example.com"}\n'
        b'{"to": "b@example.com", "name": "B\\ud800"}\n'
        b'{"to": "c@example.com", "headers": {"X-A": "\\udfff"}}\n'
        b'{"to": "d@example.com", "tags": ["ok", "\\uDC00x"]}\n'
        b'{"to": "e@example.com", "k\\ud800": 1}\n'
        b'{"to": "f@example.com", "headers": {"X-\\ud800": "v"}}\n'
        b'{"to": "g@example.com", "raw": "\xed\xa0\x80"}\n'  # a surrogate in UTF-8 bytes
        b'{"to": "h@example.com", "smile": "\\ud83d\\ude00"}\n'  # a pair is text
    )
    src = JSONLSource(write(tmp_path, data, "in.jsonl"))
    items = list(src.rows())
    assert good(items) == [
        (1, {"to": "a@example.com"}),
        (8, {"to": "h@example.com", "smile": "\U0001f600"}),
    ]
    rejected = bad(items)
    assert [(row, field) for row, field, _ in rejected] == [
        (2, "name"),
        (3, "headers.X-A"),
        (4, "tags.1"),
        (5, "k\\ud800"),
        (6, "headers.X-\\ud800"),
        (7, "raw"),
    ]
    for _, _, reason in rejected:
        assert "lone surrogate" in reason
        reason.encode("utf-8")  # the report itself is text
    assert "the key" in rejected[3][2] and "the value" in rejected[0][2]
    assert "k\ud800" not in src.columns
