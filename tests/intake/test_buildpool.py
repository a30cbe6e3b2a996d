"""Jobs built in child processes are the jobs this process would build, in row order."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import MailspoolError, RejectedRow
from mailspool.intake.builder import Attachments
from mailspool.intake.pool import (
    CHUNK_ROWS,
    MIN_SOURCE_BYTES,
    BuildPool,
    BuildSpec,
    default_processes,
)
from mailspool.intake.producer import Producer
from mailspool.intake.rejects import Rejects
from mailspool.intake.sources import Row
from mailspool.message.render import Renderer, Template
from mailspool.models import Job
from mailspool.queue import MemoryQueue, Queue, SQLiteQueue
from mailspool.testing import SMTPSink
from tests.support.cli import TEMPLATE, write_csv

POOLED_TEMPLATE = TEMPLATE.replace("To: {{ Email }}", "To: {{ Name }} <{{ Email }}>").replace(
    "Subject:", "Attachment: {{ doc }}\nSubject:"
)


def mixed_rows(n: int) -> list[Row | RejectedRow]:
    """Good rows with every kind of bad one spread over several chunks."""
    out: list[Row | RejectedRow] = []
    for i in range(n):
        number = i + 2
        values: dict[str, Any] = {"Name": f"p{i}", "Email": f"p{i}@example.com", "doc": ""}
        if i % 97 == 5:
            values["Email"] = "not-an-address"
        elif i % 89 == 7:
            values["Name"] = "Eve\nBcc: evil@example.com"
        elif i % 83 == 3:
            del values["Name"]  # a missing template variable
        elif i % 79 == 11:
            values["Email"] = "p0@example.com"  # a duplicate of row 2
        elif i % 71 == 13:
            values["doc"] = "terms.pdf"
        elif i % 67 == 17:
            values["doc"] = "missing.pdf"
        if i % 101 == 19:
            out.append(RejectedRow("(row)", "expected 2 fields, found 3", number))
            continue
        out.append(Row(number, values))
    return out


def spec_of(template: str, tmp_path: Path, *, pack: bool = False) -> BuildSpec:
    return BuildSpec(
        template=BuildSpec.template_of(Template.parse(template)),
        from_addr=None,
        subject=None,
        campaign="c1",
        attachment_dir=tmp_path,
        key_column=None,
        pack=pack,
    )


def producer(
    tmp_path: Path, queue: Queue, name: str, pool: BuildPool | None, template: str = POOLED_TEMPLATE
) -> Producer:
    return Producer(
        queue=queue,
        renderer=Renderer.build(Template.parse(template), None, None),
        campaign="c1",
        rejects=Rejects(tmp_path / name),
        attachments=Attachments(base=tmp_path),
        pool=pool,
    )


def comparable(job: Job) -> tuple[Any, ...]:
    # the Date header is the time the row was built
    message = b"\r\n".join(
        line for line in job.message.split(b"\r\n") if not line.startswith(b"Date: ")
    )
    return (job.id, job.key, job.message_id, job.sender, job.recipients, message, job.row,
            job.body_offset, job.attachments)  # fmt: skip


async def test_pool_builds_what_this_process_builds(tmp_path: Path) -> None:
    (tmp_path / "terms.pdf").write_bytes(b"%PDF-1.4 " + bytes(range(256)) * 40)
    rows = mixed_rows(3 * CHUNK_ROWS + 123)
    inline_q, pooled_q = MemoryQueue(), MemoryQueue()
    inline = await producer(tmp_path, inline_q, "inline.csv", None).run(rows)
    spec = spec_of(POOLED_TEMPLATE, tmp_path)
    pool = BuildPool(spec=spec, processes=2, head_start=False)  # every chunk to a child
    try:
        pooled = await producer(tmp_path, pooled_q, "pooled.csv", pool).run(rows)
    finally:
        pool.close()

    assert pooled.rejects_file == tmp_path / "pooled.csv"
    assert dataclasses.replace(pooled, rejects_file=inline.rejects_file) == inline
    assert inline.rejected > 30 and inline.duplicates > 10 and inline.new > 1500
    assert sorted(map(comparable, pooled_q.jobs.values())) == sorted(
        map(comparable, inline_q.jobs.values())
    )
    assert pooled_q.blobs == inline_q.blobs and len(pooled_q.blobs) == 1
    # the same rejects, in row order, with the same fields and reasons
    assert (tmp_path / "pooled.csv").read_text() == (tmp_path / "inline.csv").read_text()
    # the first of two rows with the same key wins
    (first,) = [j for j in pooled_q.jobs.values() if j.key == "p0@example.com"]
    assert first.row == 2


async def test_rows_built_here_while_the_children_start_keep_their_order(
    tmp_path: Path,
) -> None:
    """The first chunks are built in this process until a child is ready; the jobs, the
    rejects and their order are the same as when every row is built here."""
    (tmp_path / "terms.pdf").write_bytes(b"%PDF-1.4 tiny")
    rows = mixed_rows(40 * CHUNK_ROWS)
    inline_q, pooled_q = MemoryQueue(), MemoryQueue()
    inline = await producer(tmp_path, inline_q, "inline.csv", None).run(rows)
    spec = spec_of(POOLED_TEMPLATE, tmp_path)
    pool = BuildPool(spec=spec, processes=2)
    try:
        pooled = await producer(tmp_path, pooled_q, "pooled.csv", pool).run(rows)
    finally:
        pool.close()
    assert 0 < pool.rows_built_here < len(rows)  # some here, the rest by the children
    assert dataclasses.replace(pooled, rejects_file=inline.rejects_file) == inline
    assert sorted(map(comparable, pooled_q.jobs.values())) == sorted(
        map(comparable, inline_q.jobs.values())
    )
    assert (tmp_path / "pooled.csv").read_text() == (tmp_path / "inline.csv").read_text()


async def test_messages_packed_by_the_pool_are_stored_as_built_here(tmp_path: Path) -> None:
    """For the SQLite queue the children pack each message; the queue stores it as it is
    and a claim gives back the message this process would have built."""
    rows = mixed_rows(2 * CHUNK_ROWS + 7)
    (tmp_path / "terms.pdf").write_bytes(b"%PDF-1.4 tiny")
    claimed: dict[str, list[tuple[Any, ...]]] = {}
    for name, processes in (("inline", 0), ("pooled", 2)):
        queue = SQLiteQueue(tmp_path / f"{name}.db")
        await queue.open()
        spec = spec_of(POOLED_TEMPLATE, tmp_path, pack=queue.packs_messages)
        pool = BuildPool(spec=spec, processes=processes, head_start=False) if processes else None
        try:
            await producer(tmp_path, queue, f"{name}.csv", pool).run(rows)
            claimed[name] = sorted(map(comparable, await queue.claim("w", 10_000, 60)))
        finally:
            if pool is not None:
                pool.close()
            await queue.close()
    assert len(claimed["inline"]) > 900
    assert claimed["pooled"] == claimed["inline"]


async def test_a_render_process_that_dies_ends_the_run_with_a_clear_error(
    tmp_path: Path,
) -> None:
    spec = spec_of(POOLED_TEMPLATE, tmp_path)
    pool = BuildPool(spec=spec, processes=2, head_start=False)
    try:
        victim = pool._links[1].process
        victim.kill()
        victim.join()
        with pytest.raises(MailspoolError, match="a render process died"):
            await producer(tmp_path, MemoryQueue(), "r.csv", pool).run(mixed_rows(5 * CHUNK_ROWS))
    finally:
        pool.close()


async def test_an_error_in_a_render_process_is_raised_here(tmp_path: Path) -> None:
    """An error that is no row's fault stops the run with that error, as it does when
    the rows are built in this process (not as "a render process died")."""
    endless = TEMPLATE + "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}\n"
    spec = spec_of(endless, tmp_path)
    rows: list[Row | RejectedRow] = [
        Row(i + 2, {"Name": f"p{i}", "Email": f"p{i}@example.com"}) for i in range(CHUNK_ROWS)
    ]
    with pytest.raises(RecursionError):  # in this process
        await producer(tmp_path, MemoryQueue(), "a.csv", None, endless).run(rows)
    pool = BuildPool(spec=spec, processes=1, head_start=False)
    try:
        with pytest.raises(RecursionError):  # in a child: the same
            await producer(tmp_path, MemoryQueue(), "b.csv", pool, endless).run(rows)
    finally:
        pool.close()


def test_children_still_starting_when_the_pool_closes_exit_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A short source is built here before the children are up; closing the pool then
    must not make them print a broken-pipe traceback."""
    spec = spec_of(POOLED_TEMPLATE, tmp_path)
    pool = BuildPool(spec=spec, processes=2)
    pool.close()  # at once: the children are still importing
    assert [link.process.exitcode for link in pool._links] == [0, 0]
    assert "Traceback" not in capfd.readouterr().err


def test_small_sources_are_built_in_this_process(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("Name, Email\na, a@example.com\n")
    assert default_processes(small, delivering=True) == 0
    big = tmp_path / "big.csv"
    big.write_bytes(b"Name, Email\n" + b"x, x@example.com\n" * (MIN_SOURCE_BYTES // 16))
    expected = 0 if (os.cpu_count() or 1) < 2 else 1
    assert default_processes(big, delivering=True) >= expected
    assert default_processes(tmp_path / "absent.csv", delivering=False) == 0


def test_ctrl_c_on_the_process_group_stops_a_pooled_send_gracefully(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """A terminal's Ctrl-C reaches the render processes too: they must not die of it."""
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(3000)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    sink = smtp_sink()
    cmd = [
        sys.executable, "-m", "mailspool", "send", "r.csv", "--template", "t.txt",
        "--smtp", f"smtp://127.0.0.1:{sink.port}", "--rate", "100/s", "--json",
        "--render-processes", "2",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    p = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    time.sleep(3.0)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "resume" in err
    assert "Traceback" not in err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["queued"] == 3000  # every row was built and queued
    assert 0 < int(s["sent"]) < 3000


@pytest.mark.parametrize("processes", ["0", "2"])
def test_send_with_and_without_render_processes(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink], processes: str
) -> None:
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(9000)])
    with (tmp_path / "r.csv").open("a") as f:
        f.write("bad, not-an-address\nu3, u3@example.com\n")
    (tmp_path / "t.txt").write_text(TEMPLATE)
    sink = smtp_sink(dump=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    res = subprocess.run(
        [sys.executable, "-m", "mailspool", "send", "r.csv", "--template", "t.txt",
         "--smtp", f"smtp://127.0.0.1:{sink.port}", "--json", "--render-processes", processes],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert (s["rows"], s["sent"], s["rejected"], s["duplicates"]) == (9002, 9000, 1, 1)
    sink.stop()
    received = sorted(r for rcpts, _ in sink.received() for r in rcpts)
    assert received == sorted(f"u{i}@example.com" for i in range(9000))
    rejects = (tmp_path / s["rejects_file"]).read_text().splitlines()
    assert rejects[1].startswith("9002,To,")
