"""``mailspool preview`` rejects exactly the rows ``send`` rejects, with the same row
number, field and reason, and numbers rows as the rejects file does, in CSV and JSONL."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.cli import Result

TEMPLATE = """From: News <news@example.com>
To: {{ Email }}
Subject: Hello
Attachment: {{ File }}

Hi {{ Name }}
"""

# row numbers as the docs give them (docs/cli.md "Input rows"): the header is row 1, a
# blank line is a row, a quoted line break keeps one row over two lines
CSV_ROWS = (
    "Email,Name,File\n"  # 1
    "ok1@example.com,Ann,a.txt\n"  # 2
    "out@example.com,Bob,../secret.txt\n"  # 3: outside --attachment-dir
    "\n"  # 4: blank
    "miss@example.com,Cy,missing.txt\n"  # 5: no such file
    "not-an-address,Di,a.txt\n"  # 6
    'multi@example.com,"Ed\nTwo",a.txt\n'  # 7, on lines 7-8
    "only@example.com\n"  # 8, on line 9: one field of three
    "ok2@example.com,Fay,a.txt\n"  # 9
)
JSONL_ROWS = (
    '{"Email": "ok1@example.com", "Name": "Ann", "File": "a.txt"}\n'  # 1
    '{"Email": "out@example.com", "Name": "Bob", "File": "../secret.txt"}\n'  # 2
    "\n"  # 3: blank
    '{"Email": "miss@example.com", "Name": "Cy", "File": "missing.txt"}\n'  # 4
    '{"Email": "not-an-address", "Name": "Di", "File": "a.txt"}\n'  # 5
    '{"Email": "x@example.com", \n'  # 6: not JSON
    "[1, 2]\n"  # 7: not an object
    '{"Email": "ok2@example.com", "Name": "Fay", "File": "a.txt"}\n'  # 8
)


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    #: row number -> the recipient of a row send queues
    sent: dict[int, str]
    rejected: set[int]
    #: row number -> what the reason says of its attachment
    attachment_faults: dict[int, str]
    #: the numbers that hold no row: the CSV header, blank lines
    empty: dict[int, str]
    last: int


CASES = [
    Case(
        "r.csv",
        CSV_ROWS,
        sent={2: "ok1@example.com", 7: "multi@example.com", 9: "ok2@example.com"},
        rejected={3, 5, 6, 8},
        attachment_faults={3: "is outside the attachment directory", 5: "cannot read"},
        empty={1: "is its header", 4: "is blank"},
        last=9,
    ),
    Case(
        "r.jsonl",
        JSONL_ROWS,
        sent={1: "ok1@example.com", 8: "ok2@example.com"},
        rejected={2, 4, 5, 6, 7},
        attachment_faults={2: "is outside the attachment directory", 4: "cannot read"},
        empty={3: "is blank"},
        last=8,
    ),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "t.txt").write_text(TEMPLATE)
    (tmp_path / "att").mkdir()
    (tmp_path / "att" / "a.txt").write_text("attached\n")
    (tmp_path / "secret.txt").write_text("not to be sent\n")
    return tmp_path


def rejects_of(res: Result, where: Path) -> dict[int, tuple[str, str]]:
    """The rejects file a send wrote: row -> (field, reason)."""
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    with (where / summary["rejects_file"]).open(newline="", encoding="utf-8") as f:
        return {int(r["row"]): (r["field"], r["reason"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_preview_rejects_what_send_rejects(
    case: Case,
    files: Path,
    smtpd: RecordingSMTPServer,
    cli: Callable[..., Result],
) -> None:
    (files / case.name).write_text(case.text, encoding="utf-8")
    opts = ["--template", "t.txt", "--attachment-dir", "att"]
    sent = cli("send", case.name, *opts, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json")
    assert sent.returncode == 1, sent.stderr  # rows rejected
    rejects = rejects_of(sent, files)
    assert set(rejects) == case.rejected
    assert sorted(m.recipients[0] for m in smtpd.messages) == sorted(case.sent.values())
    for n, says in case.attachment_faults.items():
        assert rejects[n][0] == "Attachment" and says in rejects[n][1]

    for n in range(1, case.last + 2):
        res = cli("preview", case.name, *opts, "--row", str(n))
        assert "Traceback" not in res.stderr
        if n in case.sent:
            assert res.returncode == 0, res.stderr
            assert f"To: {case.sent[n]}" in res.stdout
            assert "Attachment: a.txt (text/plain)" in res.stdout
        elif n in rejects:
            field, reason = rejects[n]
            assert res.returncode == 1
            assert res.stderr.strip() == f"row {n} would be rejected: {field}: {reason}"
            assert res.stdout == ""
        else:
            assert res.returncode == 1
            said = case.empty.get(n, "no row")
            assert said in res.stderr and f"its rows are {min(case.sent)}-{case.last}" in (
                res.stderr
            ), res.stderr


def test_without_attachment_dir_the_templates_directory_is_the_base(
    files: Path, cli: Callable[..., Result]
) -> None:
    """As for send: secret.txt beside the template may be attached, ../secret.txt not."""
    (files / "r.csv").write_text("Email,Name,File\na@example.com,A,secret.txt\n")
    assert cli("preview", "r.csv", "--template", "t.txt").returncode == 0
    (files / "r.csv").write_text("Email,Name,File\na@example.com,A,../secret.txt\n")
    res = cli("preview", "r.csv", "--template", "t.txt")
    assert res.returncode == 1
    assert "row 2 would be rejected: Attachment: '../secret.txt' is outside" in res.stderr


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_preview_without_row_shows_the_first_row(
    name: str, files: Path, cli: Callable[..., Result]
) -> None:
    """The first row of either format: row 2 of a CSV file, row 1 of a JSONL file (whose
    first line was once passed over for line 2)."""
    (files / name).write_text(CSV_ROWS if name.endswith(".csv") else JSONL_ROWS)
    res = cli("preview", name, "--template", "t.txt", "--attachment-dir", "att")
    assert res.returncode == 0, res.stderr
    assert "To: ok1@example.com" in res.stdout


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_row_number_below_1_is_a_usage_error(
    bad: str, files: Path, cli: Callable[..., Result]
) -> None:
    (files / "r.csv").write_text(CSV_ROWS)
    res = cli("preview", "r.csv", "--template", "t.txt", "--row", bad)
    assert res.returncode == 2
    assert "--row" in res.stderr and "Traceback" not in res.stderr
