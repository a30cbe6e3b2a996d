"""``mailspool send`` end to end, run as a user runs it, against real servers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.testing import RecordingSMTPServer, SMTPSink, free_port
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.smtp import wait_for_a_final_dot

ROWS = [(f"user{i}", f"user{i}@example.com") for i in range(40)]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return tmp_path


def summary(res: Result) -> dict[str, object]:
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_send_delivers_every_row_once(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json"
    )
    assert res.returncode == 0, res.stderr
    s = summary(res)
    assert s["sent"] == 40 and s["queued"] == 40 and s["rows"] == 40
    assert s["rejected"] == 0 and s["dead"] == 0 and s["deferred"] == 0 and s["outbox"] is None
    got = sorted(m.recipients[0] for m in smtpd.messages)
    assert got == sorted(e for _, e in ROWS)
    first = smtpd.messages[0].message
    assert first["Subject"].startswith("Hi user") and first["Message-ID"]
    expected_keys = {
        "campaign", "rows", "queued", "sent", "deferred", "dead", "rejected", "duplicates",
        "skipped_already_sent", "elapsed_s", "rate_per_s", "outbox",
    }  # fmt: skip
    assert expected_keys <= set(s)
    # the same command again resumes: nothing is sent twice
    again = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}", "--json"
    )
    assert again.returncode == 0
    s2 = summary(again)
    assert s2["sent"] == 0 and s2["skipped_already_sent"] == 40
    assert len(smtpd.messages) == 40


def test_without_smtp_writes_outbox_and_says_nothing_was_sent(
    job: Path, cli: Callable[..., Result]
) -> None:
    res = cli("send", "r.csv", "--template", "t.txt")
    assert res.returncode == 0, res.stderr
    assert "NOTHING WAS SENT" in res.stderr
    emls = list((job / "outbox").rglob("*.eml"))
    assert len(emls) == 40
    assert b"Subject: Hi user" in emls[0].read_bytes()
    res = cli("send", "r.csv", "--template", "t.txt", "--json")
    assert summary(res)["outbox"]


def test_status_and_preview(job: Path, cli: Callable[..., Result]) -> None:
    cli("send", "r.csv", "--template", "t.txt")
    st = cli("status", "--json")
    assert st.returncode == 0
    (row,) = json.loads(st.stdout)
    assert row["sent"] == 40 and row["total"] == 40
    pv = cli("preview", "r.csv", "--template", "t.txt", "--row", "3")
    assert pv.returncode == 0
    assert "To: user1@example.com" in pv.stdout and "Subject: Hi user1, your update" in pv.stdout


def test_soft_rejections_never_lose_a_job(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    bad = smtp_sink("-r", "data")  # every DATA answered 4xx
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{bad.port}",
        "--retry-first", "0.2s", "--max-wait", "1s", "--json",
    )  # fmt: skip
    assert res.returncode == 75, res.stderr
    s = summary(res)
    # every job failed an attempt and waits for a retry: pending, and deferred, as
    # status counts them
    assert s["sent"] == 0 and s["pending"] == s["deferred"] == 40 and s["dead"] == 0
    assert "40 pending (40 deferred)" in res.stderr
    assert "Run the same command again" in res.stderr
    st = json.loads(cli("status", "--json").stdout)[0]
    assert st["pending"] == st["deferred"] == 40 and st["queued"] == 0
    good = smtp_sink()
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{good.port}",
        "--retry-first", "0.2s", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert summary(res)["sent"] == 40


def test_dropped_connections_are_retried(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    flaky = smtp_sink("-q", "rcpt")  # hangs up on every RCPT
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{flaky.port}",
        "--retry-first", "0.1s", "--max-wait", "0.5s", "--json",
    )  # fmt: skip
    assert res.returncode == 75
    assert summary(res)["pending"] == summary(res)["deferred"] == 40


def test_permanent_rejections_are_dead_lettered(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    sink = smtp_sink("-f", "rcpt")
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{sink.port}", "--json"
    )
    assert res.returncode == 1
    assert summary(res)["dead"] == 40
    dlq = json.loads(cli("dlq", "list", "--json").stdout)
    assert len(dlq) == 40 and {d["reason"] for d in dlq} == {"rejected_permanent"}


def test_relay_refused_pauses_and_keeps_jobs(job: Path, cli: Callable[..., Result]) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{free_port()}",
        "--max-wait", "1s", "--json",
    )  # fmt: skip
    assert res.returncode == 75
    s = summary(res)
    assert s["pending"] == 40 and s["dead"] == 0


def test_required_starttls_missing_stops_the_run_loudly(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--json",
        "--smtp", f"smtp://127.0.0.1:{smtpd.port}?starttls=required",
    )  # fmt: skip
    assert res.returncode == 75
    assert "STARTTLS" in res.stderr and "run the same command again" in res.stderr
    assert summary(res)["pending"] == 40
    assert smtpd.messages == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.csv", "--template", "t.txt"], "no such file"),
        (["r.csv", "--template", "nope.txt"], "cannot read template"),
        (["r.csv", "--template", "bad.txt"], "line"),
        (["r.csv", "--template", "t.txt", "--smtp", "http://x"], "smtp://"),
        (["r.csv", "--template", "t.txt", "--rate", "fast"], "bad rate"),
        (["r.csv", "--template", "t.txt", "--queue", "nosuch://x"], "unsupported queue"),
    ],
)
def test_startup_errors_exit_2(
    job: Path, cli: Callable[..., Result], args: list[str], needle: str
) -> None:
    (job / "bad.txt").write_text("Subject: {{ oops\n\nbody\n")
    res = cli("send", *args)
    assert res.returncode == 2
    assert needle in res.stderr


def test_secrets_never_printed(
    job: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--json", "--smtp",
        f"smtp://bob:hunter2secret@127.0.0.1:{smtpd.port}?starttls=off",
    )  # fmt: skip
    assert "hunter2secret" not in res.stdout + res.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_sigint_stops_gracefully_and_resume_finishes(
    processes: int, job: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """SIGINT to send (with --processes 2: forwarded to its delivery process)."""
    write_csv(job / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(400)])
    slow = smtp_sink("-W", ".:1")  # 1 s before each final reply
    cmd = [
        sys.executable, "-m", "mailspool", "send", "r.csv", "--template", "t.txt",
        "--smtp", f"smtp://127.0.0.1:{slow.port}", "--concurrency", "4", "--json",
        "--processes", str(processes),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    p = subprocess.Popen(
        cmd, cwd=job, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    wait_for_a_final_dot(slow, p)  # sending: the first messages wait for their reply
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "resume" in err
    s = json.loads(out.strip().splitlines()[-1])
    assert 0 < int(s["sent"]) < 400
    # nothing is left leased: the rest was handed back at once
    st = subprocess.run(
        [sys.executable, "-m", "mailspool", "status", "--json"], cwd=job, capture_output=True,
        text=True, env=env, check=True,
    )  # fmt: skip
    row = json.loads(st.stdout)[0]
    assert row.get("sending", 0) == 0
    assert row["sent"] == s["sent"]
    # the summary counts what is left in status's words: handed back untried, the jobs
    # are queued (not deferred), and pending
    assert s["pending"] == row["pending"] == row["queued"] + row["deferred"] > 0
    assert s["deferred"] == row["deferred"] == 0
    assert f"{s['pending']} pending ({row['queued']} queued)" in err
    fast = smtp_sink()
    cmd[cmd.index(f"smtp://127.0.0.1:{slow.port}")] = f"smtp://127.0.0.1:{fast.port}"
    done = subprocess.run(cmd, cwd=job, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    s2 = json.loads(done.stdout.strip().splitlines()[-1])
    assert s2["skipped_already_sent"] == s["sent"]
    assert int(s2["sent"]) + int(s["sent"]) == 400


def test_authentication_failure_is_loud_and_never_dead_letters(
    job: Path, server_tls: ssl.SSLContext, ca_file: Path, cli: Callable[..., Result]
) -> None:
    with RecordingSMTPServer(tls=server_tls, credentials=("bob", "right")) as srv:
        res = cli(
            "send", "r.csv", "--template", "t.txt", "--json",
            "--smtp", f"smtp://bob@127.0.0.1:{srv.port}?cafile={ca_file}",
            env={"MAILSPOOL_SMTP_PASSWORD": "wrong-password"},
        )  # fmt: skip
    assert res.returncode == 75
    assert "relay refused us" in res.stderr and "535" in res.stderr
    assert "wrong-password" not in res.stderr + res.stdout
    s = summary(res)
    assert s["dead"] == 0 and s["pending"] == 40
    st = json.loads(cli("status", "--json").stdout)[0]
    assert "535" in st["last_error"] and st.get("dead", 0) == 0
    assert "last error: relay paused: 535 5.7.8" in cli("status").stdout
    # the relay's fault, not the jobs': no attempt is charged to any of them
    db = sqlite3.connect(job / "mailspool.db")
    assert db.execute("SELECT DISTINCT attempts FROM jobs").fetchall() == [(0,)]


def test_some_recipients_refused(tmp_path: Path, cli: Callable[..., Result]) -> None:
    """Sent to the accepted recipients; a temporary refusal gets the same message later
    (same Message-ID), a permanent one is recorded."""
    (tmp_path / "direct.csv").write_text(
        "to,cc,bcc,subject,body\n"
        "ok@example.com,later@example.com,bad@example.com,Hello,One message three recipients\n"
    )
    with RecordingSMTPServer() as srv:
        srv.handler.rcpt_replies["later@example.com"] = "451 4.2.1 mailbox busy"
        srv.handler.rcpt_replies["bad@example.com"] = "550 5.1.1 no such user"
        res = cli(
            "send", "direct.csv", "--from", "news@example.com", "--json", "--max-wait", "0s",
            "--retry-first", "0.2s", "--smtp", f"smtp://127.0.0.1:{srv.port}",
        )  # fmt: skip
        assert res.returncode == 75, res.stderr  # the retry for later@ is still due
        assert [m.recipients for m in srv.messages] == [["ok@example.com"]]
        jobs = json.loads(cli("status", "--json").stdout)[0]
        assert jobs["sent"] == 1 and jobs["deferred"] == 1
        del srv.handler.rcpt_replies["later@example.com"]
        time.sleep(0.3)
        res = cli(
            "send", "direct.csv", "--from", "news@example.com", "--json",
            "--retry-first", "0.2s", "--smtp", f"smtp://127.0.0.1:{srv.port}",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert [m.recipients for m in srv.messages] == [["ok@example.com"], ["later@example.com"]]
        first, second = (m.message["Message-ID"] for m in srv.messages)
        assert first == second
