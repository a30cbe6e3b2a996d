"""The producer: rows -> validated jobs -> the queue; and ``mailspool send`` end to end."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake.builder import MAX_MESSAGE_BYTES, Attachments
from mailspool.intake.producer import BATCH, FIRST_BATCH, Producer
from mailspool.intake.rejects import Rejects
from mailspool.intake.sources import Row, open_source
from mailspool.message.render import Renderer, Template
from mailspool.models import Enqueued, Job, State, job_id
from mailspool.queue import MemoryQueue, Queue, SQLiteQueue
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.paths import ROOT


def rows(*values: dict[str, Any], first: int = 2) -> list[Row]:
    return [Row(first + i, v) for i, v in enumerate(values)]


def people(n: int) -> list[Row]:
    return rows(*({"Name": f"p{i}", "Email": f"p{i}@example.com"} for i in range(n)))


def make_producer(
    tmp_path: Path,
    queue: Queue,
    template: str | None = TEMPLATE,
    *,
    campaign: str = "c1",
    key_column: str | None = None,
    default_from: str | None = None,
    rejects_name: str = "rejects.csv",
) -> Producer:
    tpl = Template.parse(template) if template is not None else None
    return Producer(
        queue=queue,
        renderer=Renderer.build(tpl, default_from, None),
        campaign=campaign,
        rejects=Rejects(tmp_path / rejects_name),
        attachments=Attachments(base=tmp_path),
        key_column=key_column,
    )


def parse(job: Job) -> EmailMessage:
    msg = email.message_from_bytes(job.message, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def read_rejects(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# -- jobs -----------------------------------------------------------------------------


async def test_each_row_becomes_one_self_contained_job(tmp_path: Path) -> None:
    q = MemoryQueue()
    rep = await make_producer(tmp_path, q).run(people(3))
    assert (rep.rows, rep.new, rep.queued, rep.rejected, rep.duplicates) == (3, 3, 3, 0, 0)
    assert rep.rejects_file is None
    assert not (tmp_path / "rejects.csv").exists()
    jobs = sorted(q.jobs.values(), key=lambda j: j.row)
    assert [j.row for j in jobs] == [2, 3, 4]
    for i, j in enumerate(jobs):
        assert j.campaign == "c1"
        assert j.state is State.QUEUED
        assert j.sender == "news@example.com"
        assert j.recipients == (f"p{i}@example.com",)
        assert j.key == f"p{i}@example.com"
        assert j.id == job_id("c1", j.key)
        msg = parse(j)
        assert msg["To"] == f"p{i}@example.com"
        assert msg["Subject"] == f"Hi p{i}, your update"
        assert msg["Message-ID"] == j.message_id
        assert j.body_offset == j.message.index(b"Content-Type:")


async def test_rows_are_enqueued_in_batches(tmp_path: Path) -> None:
    batches: list[int] = []

    class Spy(MemoryQueue):
        async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
            batches.append(len(jobs))
            return await super().enqueue(jobs)

    q = Spy()
    rep = await make_producer(tmp_path, q).run(people(FIRST_BATCH + 2 * BATCH + 201))
    assert rep.new == FIRST_BATCH + 2 * BATCH + 201 == len(q.jobs)
    # a small first batch, so that a worker beside the producer starts sooner
    assert batches == [FIRST_BATCH, BATCH, BATCH, 201]


async def test_producer_consumes_the_source_lazily(tmp_path: Path) -> None:
    """Rows are pulled as the producer goes, not collected first."""
    pulled = 0
    enqueued_when: list[int] = []

    class Spy(MemoryQueue):
        async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
            enqueued_when.append(pulled)
            return await super().enqueue(jobs)

    def source() -> Iterable[Row]:
        nonlocal pulled
        for row in people(FIRST_BATCH + 2 * BATCH):
            pulled += 1
            yield row

    await make_producer(tmp_path, Spy()).run(source())
    assert enqueued_when == [FIRST_BATCH, FIRST_BATCH + BATCH, FIRST_BATCH + 2 * BATCH]


# -- Message-ID and idempotency ---------------------------------------------------------


async def test_message_id_is_fixed_per_campaign_and_key(tmp_path: Path) -> None:
    q = MemoryQueue()
    await make_producer(tmp_path, q).run(people(2))
    first = {j.key: j.message_id for j in q.jobs.values()}
    assert len(set(first.values())) == 2
    for key, mid in first.items():
        assert mid == f"<{job_id('c1', key)}@example.com>"

    # the same rows again, into the same queue: nothing new, same Message-IDs
    rep = await make_producer(tmp_path, q).run(people(2))
    assert (rep.new, rep.pending, rep.duplicates) == (0, 2, 0)
    assert {j.key: j.message_id for j in q.jobs.values()} == first

    # a fresh queue computes the same Message-IDs; another campaign different ones
    fresh = MemoryQueue()
    await make_producer(tmp_path, fresh).run(people(2))
    assert {j.key: j.message_id for j in fresh.jobs.values()} == first
    other = MemoryQueue()
    await make_producer(tmp_path, other, campaign="c2").run(people(2))
    assert set(j.message_id for j in other.jobs.values()).isdisjoint(first.values())


async def test_rerun_reports_already_sent_and_dead(tmp_path: Path) -> None:
    q = MemoryQueue()
    await make_producer(tmp_path, q).run(people(3))
    jobs = sorted(q.jobs.values(), key=lambda j: j.row)
    jobs[0].state = State.SENT
    jobs[1].state = State.DEAD
    rep = await make_producer(tmp_path, q).run(people(3))
    assert (rep.new, rep.already_sent, rep.already_dead, rep.pending) == (0, 1, 1, 1)


async def test_repeated_recipient_is_skipped_as_a_duplicate(tmp_path: Path) -> None:
    q = MemoryQueue()
    src = rows(
        {"Name": "a", "Email": "ann@example.com"},
        {"Name": "b", "Email": "bob@example.com"},
        {"Name": "a again", "Email": "ANN@Example.COM"},
        {"Name": "a third", "Email": "ann@example.com"},
    )
    rep = await make_producer(tmp_path, q).run(src)
    assert (rep.rows, rep.new, rep.duplicates, rep.rejected) == (4, 2, 2, 0)
    assert sorted(j.row for j in q.jobs.values()) == [2, 3]
    ann = q.jobs[job_id("c1", "ann@example.com")]
    assert parse(ann)["Subject"] == "Hi a, your update"  # the first row wins


async def test_duplicate_across_batches_is_still_a_duplicate(tmp_path: Path) -> None:
    q = MemoryQueue()
    src = [*people(600), Row(700, {"Name": "again", "Email": "p1@example.com"})]
    rep = await make_producer(tmp_path, q).run(src)
    assert (rep.new, rep.duplicates) == (600, 1)


async def test_key_column_decides_what_is_the_same_message(tmp_path: Path) -> None:
    q = MemoryQueue()
    src = rows(
        {"Id": "1", "Name": "a", "Email": "ann@example.com"},
        {"Id": "2", "Name": "b", "Email": "ann@example.com"},  # same person, other message
        {"Id": "1", "Name": "c", "Email": "carl@example.com"},  # same key: a duplicate
        {"Id": "", "Name": "d", "Email": "dan@example.com"},
    )
    p = make_producer(tmp_path, q, key_column="Id")
    rep = await p.run(src)
    assert (rep.new, rep.duplicates, rep.rejected) == (2, 1, 1)
    assert sorted(j.key for j in q.jobs.values()) == ["1", "2"]
    assert q.jobs[job_id("c1", "1")].recipients == ("ann@example.com",)
    assert read_rejects(tmp_path / "rejects.csv")[1] == ["5", "Id", "the key column is empty"]


async def test_key_column_missing_from_the_source_rejects_naming_it(tmp_path: Path) -> None:
    rep = await make_producer(tmp_path, MemoryQueue(), key_column="Ref").run(people(2))
    assert rep.rejected == 2
    lines = read_rejects(tmp_path / "rejects.csv")
    assert [r[:2] for r in lines[1:]] == [["2", "Ref"], ["3", "Ref"]]
    assert "no such column" in lines[1][2]


# -- rejects ------------------------------------------------------------------------------


async def test_rejects_file_has_row_field_and_reason(tmp_path: Path) -> None:
    q = MemoryQueue()
    src: list[Row | RejectedRow] = [
        Row(2, {"Name": "ok", "Email": "ok@example.com"}),
        Row(3, {"Name": "bad", "Email": "not-an-address"}),
        RejectedRow("(row)", "expected 2 fields as in the header, found 3", 4),
        Row(5, {"Name": "x\nBcc: evil@example.com", "Email": "x@example.com"}),
        Row(6, {"Email": "noname@example.com"}),
        Row(7, {"Name": "ok2", "Email": "ok2@example.com"}),
    ]
    rep = await make_producer(tmp_path, q).run(src)
    assert (rep.rows, rep.new, rep.rejected) == (6, 2, 4)
    assert rep.rejects_file == tmp_path / "rejects.csv"
    lines = read_rejects(tmp_path / "rejects.csv")
    assert lines[0] == ["row", "field", "reason"]
    assert [line[:2] for line in lines[1:]] == [
        ["3", "To"],
        ["4", "(row)"],
        ["5", "Subject"],
        ["6", "Subject"],
    ]
    assert "not-an-address" in lines[1][2]
    assert lines[2][2] == "expected 2 fields as in the header, found 3"
    assert "line break" in lines[3][2]
    assert "'Name' is undefined" in lines[4][2]
    assert sorted(j.row for j in q.jobs.values()) == [2, 7]
    assert all("evil" not in r for j in q.jobs.values() for r in j.recipients)


async def test_rejects_file_cells_never_start_like_a_formula(tmp_path: Path) -> None:
    src: list[Row | RejectedRow] = [
        RejectedRow('=HYPERLINK("http://evil.example","x")', "not valid UTF-8", 2),
        RejectedRow("@SUM(A1)", "-1+2", 3),
        RejectedRow("+x", "\tcmd", 4),
        RejectedRow("Name", "\rx", 5),
        RejectedRow("k\ud800", "surrogate in the field name", 6),  # written, not a crash
        RejectedRow("To", "plain reason", 7),
    ]
    rep = await make_producer(tmp_path, MemoryQueue()).run(src)
    assert rep.rejected == 6
    lines = read_rejects(tmp_path / "rejects.csv")
    assert lines[1:] == [
        ["2", '\'=HYPERLINK("http://evil.example","x")', "not valid UTF-8"],
        ["3", "'@SUM(A1)", "'-1+2"],
        ["4", "'+x", "'\tcmd"],
        ["5", "Name", "'\rx"],
        ["6", "k\\ud800", "surrogate in the field name"],
        ["7", "To", "plain reason"],
    ]


async def test_rejects_file_is_closed_when_the_queue_fails(tmp_path: Path) -> None:
    class Broken(MemoryQueue):
        async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
            raise RuntimeError("queue down")

    p = make_producer(tmp_path, Broken())
    with pytest.raises(RuntimeError):
        await p.run([Row(2, {"Name": "x", "Email": "bad"}), *people(1)])
    assert p.rejects._f is not None and p.rejects._f.closed
    assert len(read_rejects(tmp_path / "rejects.csv")) == 2


async def test_unwritable_rejects_file_is_a_clear_error(tmp_path: Path) -> None:
    p = make_producer(tmp_path, MemoryQueue(), rejects_name="no/such/dir/rejects.csv")
    with pytest.raises(MailspoolError, match=r"cannot write the rejects file .*no/such/dir"):
        await p.run([Row(2, {"Name": "x", "Email": "bad"})])


# -- attachments: stored once ---------------------------------------------------------------

ATTACHING = TEMPLATE.replace("Subject:", "Attachment: terms.pdf\nSubject:")


async def test_attachment_is_stored_once_per_campaign_as_a_blob(tmp_path: Path) -> None:
    payload = b"%PDF-1.4 " + bytes(range(256)) * 100
    (tmp_path / "terms.pdf").write_bytes(payload)
    calls: list[tuple[str, str]] = []

    class Spy(MemoryQueue):
        async def put_blob(self, digest: str, data: bytes) -> None:
            calls.append(("blob", digest))
            await super().put_blob(digest, data)

        async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
            calls.append(("enqueue", str(len(jobs))))
            return await super().enqueue(jobs)

    q = Spy()
    rep = await make_producer(tmp_path, q, ATTACHING).run(people(FIRST_BATCH + BATCH + 200))
    assert rep.new == FIRST_BATCH + BATCH + 200
    assert len(q.blobs) == 1
    ((digest, stored),) = q.blobs.items()
    assert stored == payload
    # one blob write, before the first jobs that reference it
    assert calls == [
        ("blob", digest),
        ("enqueue", str(FIRST_BATCH)),
        ("enqueue", str(BATCH)),
        ("enqueue", "200"),
    ]
    for j in q.jobs.values():
        assert [(a.digest, a.filename, a.content_type) for a in j.attachments] == [
            (digest, "terms.pdf", "application/pdf")
        ]
        assert payload not in j.message
        assert len(j.message) < 2000
        assert "Attachment" not in parse(j)


async def test_attachment_blobs_in_sqlite(tmp_path: Path) -> None:
    (tmp_path / "terms.pdf").write_bytes(b"terms v1")
    (tmp_path / "other.txt").write_bytes(b"other")
    tpl = TEMPLATE.replace("Subject:", "Attachment: terms.pdf\nAttachment: {{ Extra }}\nSubject:")
    q = SQLiteQueue(tmp_path / "q.db")
    await q.open()
    try:
        src = rows(
            *(
                {"Name": f"p{i}", "Email": f"p{i}@example.com", "Extra": "other.txt"}
                for i in range(5)
            )
        )
        await make_producer(tmp_path, q, tpl).run(src)
        job = await q.get(job_id("c1", "p3@example.com"))
        assert job is not None
        names = [a.filename for a in job.attachments]
        assert names == ["terms.pdf", "other.txt"]
        assert [await q.get_blob(a.digest) for a in job.attachments] == [b"terms v1", b"other"]
    finally:
        await q.close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (5,)


async def test_bad_attachment_rejects_the_row_only(tmp_path: Path) -> None:
    (tmp_path / "ok.pdf").write_bytes(b"ok")
    (tmp_path.parent / "outside.pdf").write_bytes(b"no")
    tpl = TEMPLATE.replace("Subject:", "Attachment: {{ File }}\nSubject:")
    src = rows(
        {"Name": "a", "Email": "a@example.com", "File": "ok.pdf"},
        {"Name": "b", "Email": "b@example.com", "File": "../outside.pdf"},
        {"Name": "c", "Email": "c@example.com", "File": "missing.pdf"},
        {"Name": "d", "Email": "d@example.com", "File": str(tmp_path.parent / "outside.pdf")},
    )
    q = MemoryQueue()
    rep = await make_producer(tmp_path, q, tpl).run(src)
    assert (rep.new, rep.rejected) == (1, 3)
    assert len(q.blobs) == 1
    lines = read_rejects(tmp_path / "rejects.csv")[1:]
    assert [(r[0], r[1]) for r in lines] == [
        ("3", "Attachment"),
        ("4", "Attachment"),
        ("5", "Attachment"),
    ]
    assert "outside the attachment directory" in lines[0][2]
    assert "No such file" in lines[1][2]
    assert "outside the attachment directory" in lines[2][2]


async def test_message_over_the_size_limit_with_its_attachments_is_rejected(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(MAX_MESSAGE_BYTES * 3 // 4 + 1024)  # base64 grows it past the limit
    tpl = TEMPLATE.replace("Subject:", "Attachment: big.bin\nSubject:")
    q = MemoryQueue()
    rep = await make_producer(tmp_path, q, tpl).run(people(1))
    assert (rep.new, rep.rejected) == (0, 1)
    (line,) = read_rejects(tmp_path / "rejects.csv")[1:]
    assert line[:2] == ["2", "Attachment"] and "over the" in line[2]


async def test_message_body_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    tpl = TEMPLATE.replace("this is", "{{ Big }}")
    src = rows({"Name": "a", "Email": "a@example.com", "Big": "x" * (MAX_MESSAGE_BYTES + 10)})
    rep = await make_producer(tmp_path, MemoryQueue(), tpl).run(src)
    assert rep.rejected == 1
    assert read_rejects(tmp_path / "rejects.csv")[1][:2] == ["2", "body"]


# -- direct mode from a JSONL file -----------------------------------------------------


async def test_direct_mode_jsonl_through_the_producer(tmp_path: Path) -> None:
    lines = [
        {"to": ["a@example.com", "B <b@example.com>"], "cc": "c@example.com",
         "bcc": "d@example.com", "subject": "Hello", "body": "Text", "html": "<p>Html</p>",
         "reply_to": "r@example.com"},
        {"to": "e@example.com", "subject": "No from", "body": "x"},
        {"to": "f@example.com", "from": "Other <other@example.org>", "body": "y"},
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    q = MemoryQueue()
    p = make_producer(tmp_path, q, None, default_from="News <news@example.com>")
    rep = await p.run(open_source(path).rows())
    assert (rep.new, rep.rejected) == (3, 0)
    by_row = {j.row: j for j in q.jobs.values()}
    first = by_row[1]
    assert first.recipients == ("a@example.com", "b@example.com", "c@example.com", "d@example.com")
    msg = parse(first)
    assert msg["To"] == "a@example.com, B <b@example.com>"
    assert msg["Cc"] == "c@example.com" and msg["Bcc"] is None
    assert msg["Reply-To"] == "r@example.com"
    assert msg["From"] == "News <news@example.com>"
    assert msg.get_content_type() == "multipart/alternative"
    assert by_row[2].sender == "news@example.com"
    assert by_row[3].sender == "other@example.org"
    assert by_row[3].message_id.endswith("@example.org>")


# -- end to end through the CLI ------------------------------------------------------------


def summary(res: Result) -> dict[str, Any]:
    assert res.stdout.strip(), res.stderr
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_demo_csv_every_recipient_gets_exactly_one_message(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    shutil.copy(ROOT / "examples" / "recipients.csv", tmp_path)
    shutil.copy(ROOT / "examples" / "welcome.txt", tmp_path)
    res = cli(
        "send", "recipients.csv", "--template", "welcome.txt",
        "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    s = summary(res)
    assert (s["rows"], s["queued"], s["sent"], s["rejected"], s["dead"]) == (106, 106, 106, 0, 0)
    assert "rejects_file" not in s

    expected = {}
    for item in open_source(tmp_path / "recipients.csv").rows():
        assert isinstance(item, Row)
        expected[item.values["Email"]] = item.values["Name"].title()
    assert len(expected) == 106

    got: dict[str, list[EmailMessage]] = {}
    for m in smtpd.messages:
        assert m.sender == "news@example.com"
        (rcpt,) = m.recipients
        got.setdefault(rcpt, []).append(
            email.message_from_bytes(m.data, policy=email.policy.default)
        )
    assert sorted(got) == sorted(expected)
    for addr, msgs in got.items():
        assert len(msgs) == 1, f"{addr} got {len(msgs)} messages"
        msg = msgs[0]
        (to,) = msg["To"].addresses
        assert (to.display_name, to.addr_spec) == (expected[addr], addr)
        assert msg["Subject"] == f"Hi {expected[addr]}, your update"
        assert msg["From"] == "Mailspool Demo <news@example.com>"
        assert f"You are receiving it at {addr}." in msg.get_content()
    assert len({m.message["Message-ID"] for m in smtpd.messages}) == 106


def test_mixed_good_and_bad_rows(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    good = [(f"good{i}", f"good{i}@example.com") for i in range(5)]
    write_csv(tmp_path / "mixed.csv", good)
    with (tmp_path / "mixed.csv").open("ab") as f:
        f.write(b"bad address, not-an-address\n")  # row 7
        f.write(b"too, many, fields\n")  # row 8
        f.write(b"bad\xffutf8, utf8@example.com\n")  # row 9
        f.write(b'"Eve\nBcc: evil@example.com", eve@example.com\n')  # row 10: header injection
        f.write(b"dup, good0@example.com\n")  # row 11: a duplicate, not a reject
        f.write(b"last, last@example.com\n")  # row 12
        f.write(b'"Smith, John", smith@example.com\n')  # row 13: a comma in the name is fine
    (tmp_path / "t.txt").write_text(
        TEMPLATE.replace("To: {{ Email }}", "To: {{ Name }} <{{ Email }}>")
    )
    res = cli(
        "send", "mixed.csv", "--template", "t.txt",
        "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json",
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    s = summary(res)
    assert s["rows"] == 12
    assert s["rejected"] == 4
    assert s["duplicates"] == 1
    assert s["sent"] == 7 and s["queued"] == 7 and s["dead"] == 0
    delivered = sorted(r for m in smtpd.messages for r in m.recipients)
    assert delivered == sorted([e for _, e in good] + ["last@example.com", "smith@example.com"])
    (smith,) = [m.message for m in smtpd.messages if m.recipients == ["smith@example.com"]]
    assert smith["To"] == '"Smith, John" <smith@example.com>'
    assert all(b"evil" not in m.data for m in smtpd.messages)

    rejects = tmp_path / s["rejects_file"]
    lines = read_rejects(rejects)
    assert lines[0] == ["row", "field", "reason"]
    assert [(r[0], r[1]) for r in lines[1:]] == [
        ("7", "To"),
        ("8", "(row)"),
        ("9", "Name"),
        ("10", "To"),
    ]
    assert "not-an-address" in lines[1][2]
    assert "found 3" in lines[2][2]
    assert "UTF-8" in lines[3][2]
    assert "line break" in lines[4][2]


def test_template_syntax_error_exits_2_naming_the_line(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    write_csv(tmp_path / "r.csv", [("a", "a@example.com")])
    (tmp_path / "t.txt").write_text("From: a@example.com\nTo: {{ Email }\n\nx\n")
    res = cli("send", "r.csv", "--template", "t.txt", "--queue", "memory://")
    assert res.returncode == 2
    assert "t.txt: line 2" in res.stderr


def test_unclosed_quote_every_data_line_is_sent_or_rejected_naming_it(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    (tmp_path / "r.csv").write_text(
        "Name,Email\n"
        "a,a@example.com\n"  # line 2
        '"b,b@example.com\n'  # line 3: a quote that is never closed
        "c,c@example.com\n"
        "d,d@example.com\n",
        encoding="utf-8",
    )
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("send", "r.csv", "--template", "t.txt", "--json")
    assert res.returncode == 1, res.stderr
    s = summary(res)
    assert (s["rows"], s["queued"], s["rejected"]) == (2, 1, 1)
    emls = list((tmp_path / "outbox").rglob("*.eml"))
    assert [b"To: a@example.com" in e.read_bytes() for e in emls] == [True]
    lines = read_rejects(tmp_path / s["rejects_file"])
    assert lines == [
        ["row", "field", "reason"],
        [
            "3",
            "(row)",
            "a quoted field opened on line 3 is never closed; lines 3-5 were not read as rows",
        ],
    ]


def test_formula_text_from_the_input_is_neutralised_in_the_rejects_file(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    # a column name is the field of a rejected row: here one that is a formula
    (tmp_path / "r.csv").write_bytes(
        b'Name,Email,"=HYPERLINK(""http://evil.example"",""x"")"\n'
        b"a,a@example.com,ok\n"
        b"b,b@example.com,bad\xff\n"
    )
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("send", "r.csv", "--template", "t.txt", "--json")
    assert res.returncode == 1, res.stderr
    s = summary(res)
    assert (s["queued"], s["rejected"]) == (1, 1)
    raw = (tmp_path / s["rejects_file"]).read_text(encoding="utf-8")
    assert "\n=" not in raw and ",=" not in raw
    assert read_rejects(tmp_path / s["rejects_file"])[1] == [
        "3",
        '\'=HYPERLINK("http://evil.example","x")',
        "not valid UTF-8",
    ]


def test_jsonl_lone_surrogate_rejects_that_line_and_sends_the_rest(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    (tmp_path / "r.jsonl").write_bytes(
        b'{"Name": "a", "Email": "a@example.com"}\n'
        b'{"Name": "b\\ud800", "Email": "b@example.com"}\n'
        b'{"Name": "c", "Email": "c@example.com", "headers": {"X-A": "\\udfff"}}\n'
        b'{"Name": "d", "Email": "d@example.com", "@k\\udc00": 1}\n'
        b'{"Name": "e", "Email": "e@example.com"}\n'
    )
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("send", "r.jsonl", "--template", "t.txt", "--json")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    s = summary(res)
    assert (s["rows"], s["queued"], s["rejected"]) == (5, 2, 3)
    sent = sorted(
        to for e in (tmp_path / "outbox").rglob("*.eml")
        for to in ("a@example.com", "e@example.com") if f"To: {to}".encode() in e.read_bytes()
    )  # fmt: skip
    assert sent == ["a@example.com", "e@example.com"]
    lines = read_rejects(tmp_path / s["rejects_file"])
    assert [line[:2] for line in lines[1:]] == [
        ["2", "Name"],
        ["3", "headers.X-A"],
        ["4", "'@k\\udc00"],
    ]
    assert all("lone surrogate" in line[2] for line in lines[1:])
