"""Properties of the file sources and of the CSV files mailspool writes, over generated
input: what Python's csv writer writes reads back; no text makes the CSV source lose a
line; a written cell never starts like a formula."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailspool.errors import RejectedRow, SourceError
from mailspool.intake.csvout import FORMULA_START, SafeWriter, safe_cell
from mailspool.intake.sources import CSVSource, Row

LEAN = settings(max_examples=150, deadline=None)

#: any text but lone surrogates (a file holds text; an undecodable byte is tested apart)
TEXT = st.characters(exclude_categories=("Cs",))
#: what CSV is made of, often, and anything else now and then
CSV_CHARS = st.one_of(st.sampled_from(list('ab ,;\t"\n\r')), TEXT)
CELL = st.text(alphabet=CSV_CHARS, max_size=12)
HEADER = ["Name", "Email", "Note"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file each example writes anew: a test's examples all run in one call, so a
    function-scoped tmp_path would not be fresh per example either."""
    return tmp_path_factory.mktemp("properties") / "in.csv"


def physical_lines(data: bytes) -> list[bytes]:
    """The file's lines as a text file opened with newline="" splits them."""
    lines = re.split(rb"\r\n|\r|\n", data)
    return lines[:-1] if lines[-1] == b"" else lines


@LEAN
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
    eol=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_what_the_csv_writer_writes_reads_back(
    scratch: Path, rows: list[list[str]], delimiter: str, eol: str, bom: bool
) -> None:
    # the writer quotes a value only for the characters of its own line end: a bare \r
    # written with \n line ends is not quoted, and no reader can tell it from a line end
    assume(eol == "\r\n" or not any("\r" in v for r in rows for v in r))
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=delimiter, lineterminator=eol)
    w.writerow(HEADER)
    w.writerows(rows)
    scratch.write_bytes(out.getvalue().encode("utf-8-sig" if bom else "utf-8"))
    src = CSVSource(scratch)
    items = list(src.rows())
    assert src.columns == HEADER
    # values are trimmed, as the README promises
    expected = [dict(zip(HEADER, (v.strip() for v in r), strict=True)) for r in rows]
    assert [(r.number, r.values) if isinstance(r, Row) else r for r in items] == list(
        enumerate(expected, start=2)
    )


@LEAN
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=4),
    opened=st.lists(st.text(alphabet="ab ", max_size=3), max_size=2),
    tail=st.text(alphabet=CSV_CHARS.filter(lambda c: c != '"'), max_size=40),
)
def test_a_quote_never_closed_is_one_rejected_row_to_the_end(
    scratch: Path, rows: list[list[str]], opened: list[str], tail: str
) -> None:
    out = io.StringIO(newline="")
    w = csv.writer(out)
    w.writerow(HEADER)
    w.writerows(rows)
    # then a row whose next field opens a quote that nothing after it closes
    start = len(physical_lines(out.getvalue().encode("utf-8"))) + 1
    data = (out.getvalue() + "".join(v + "," for v in opened) + '"' + tail).encode("utf-8")
    scratch.write_bytes(data)
    src = CSVSource(scratch)
    items = [(src.lines, item) for item in src.rows()]
    *before, (span, last) = items
    expected = [dict(zip(HEADER, (v.strip() for v in r), strict=True)) for r in rows]
    assert [r.values for _, r in before if isinstance(r, Row)] == expected
    total = len(physical_lines(data))
    assert isinstance(last, RejectedRow)
    assert span == (start, total)
    assert f"a quoted field opened on line {start} is never closed" in last.reason
    assert (f"lines {start}-{total}" if total > start else f"line {start} was") in last.reason


#: a line of a hostile CSV file: fields, quotes where they belong and where they do not,
#: and lines that open a quoted value or close one (which makes a row run over lines)
TOKEN = st.sampled_from(["a", "b@x", '"', '""', ",", ",", ";", " ", "\t"])
PLAIN = st.lists(st.one_of(TOKEN, TOKEN, TOKEN, TEXT), max_size=8).map("".join)
UNQUOTED = PLAIN.map(lambda t: t.replace('"', ""))
LINE = st.tuples(
    st.one_of(PLAIN, UNQUOTED.map(lambda t: '"' + t), UNQUOTED.map(lambda t: t + '"')),
    st.sampled_from(["\n", "\n", "\r\n", "\r", ""]),
).map(lambda t: (t[0] + t[1]).encode())
HEADERS = st.sampled_from(["Name,Email\n", "Name;Email;Note\r\n", '"Name","Email"\n', "a\n"])


@LEAN
@given(
    # mostly a header that reads, so that the body is what is tested
    header=st.one_of(HEADERS, HEADERS, HEADERS, st.text(alphabet=CSV_CHARS, max_size=20)),
    body=st.lists(st.one_of(LINE, LINE, LINE, st.just(b"\xff")), max_size=10),
)
def test_no_text_makes_the_csv_source_lose_a_line(
    scratch: Path, header: str, body: list[bytes]
) -> None:
    data = header.encode() + b"".join(body)
    scratch.write_bytes(data)
    spans: list[tuple[tuple[int, int], Row | RejectedRow]] = []
    src = CSVSource(scratch)
    try:
        for item in src.rows():
            spans.append((src.lines, item))
    except SourceError:
        assert spans == []  # the whole file is refused, out loud, before any row
        return
    lines = physical_lines(data)
    covered = {1}  # the header: a header over several lines is a SourceError
    numbers = []
    for (first, last), item in spans:
        assert 1 <= first <= last <= len(lines)
        for n in range(first, last + 1):
            assert n not in covered, f"line {n} read twice"
            covered.add(n)
        if isinstance(item, RejectedRow):
            assert item.row is not None
            numbers.append(item.row)
            if first != last:
                assert f"lines {first}-{last}" in item.reason
            elif first != item.row:
                assert f"line {first}" in item.reason
        else:
            numbers.append(item.number)
    assert numbers == sorted(set(numbers)) and all(n >= 2 for n in numbers)
    # a line no item covers was a blank row: nothing but white space and quotes
    for n, line in enumerate(lines, start=1):
        if n not in covered:
            text = line.decode("utf-8", "surrogateescape")
            assert not text.replace('"', "").strip(), f"line {n} {line!r} was lost"


@LEAN
@given(st.text())
def test_safe_cell_never_starts_like_a_formula_and_keeps_the_text(text: str) -> None:
    cell = safe_cell(text)
    assert not cell.startswith(FORMULA_START)
    if text.startswith(FORMULA_START):
        assert cell == "'" + text
    else:
        assert cell == text


@LEAN
@given(st.lists(st.text(alphabet=TEXT), min_size=1, max_size=4))
def test_safe_writer_writes_each_cell_as_safe_cell_makes_it(cells: list[str]) -> None:
    out = io.StringIO(newline="")
    SafeWriter(out).writerow(cells)
    (row,) = csv.reader(io.StringIO(out.getvalue(), newline=""))
    assert row == [safe_cell(c) for c in cells]
