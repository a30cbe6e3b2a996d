"""Row sources: CSV and JSON lines, read as a stream."""

from __future__ import annotations

import inspect
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import ConfigError, RejectedRow, SourceError
from mailspool.sources import CSVSource, JSONLSource, Row, open_source

ROOT = Path(__file__).resolve().parent.parent
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
