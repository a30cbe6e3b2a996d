"""``--return-path`` as a user runs it: every message's envelope sender is the VERP
address naming its job (on SQLite and on Redis, the worker needing no secret), From is
unchanged, a retry of refused recipients keeps its parent's address, and a bad value or
a missing secret stops the command at start (exit 2, naming it)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.message.unsubscribe import Secrets
from mailspool.message.verp import ENV_SECRET, ENV_SECRET_FILE, read_return_path
from mailspool.models import job_id
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv

CLI = Callable[..., Result]
SECRET = "return-path-secret-" + "r" * 30
ENV = {ENV_SECRET: SECRET}
BASE = "bounces@bounce.example.com"
VERP = re.compile(r"bounces\+[a-z2-7]{40}@bounce\.example\.com")
ROWS = [(f"user{i}", f"user{i}@example.com") for i in range(5)]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return tmp_path


def queued_ids(db: Path) -> dict[str, str]:
    """recipient -> job id, as the SQLite queue has them."""
    with sqlite3.connect(db) as conn:
        return {key: jid for jid, key in conn.execute("SELECT id, key FROM jobs")}


def test_send_makes_each_envelope_sender_name_its_job(
    job: Path, smtpd: RecordingSMTPServer, cli: CLI
) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        "--return-path", BASE, "--campaign", "spring", "--json", env=ENV,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    known = queued_ids(job / "mailspool.db")
    assert len(smtpd.messages) == len(ROWS) == len(known)
    senders = set()
    for m in smtpd.messages:
        assert VERP.fullmatch(m.sender), m.sender
        (rcpt,) = m.recipients
        found = read_return_path(Secrets([SECRET]), m.sender, BASE)
        assert found == known[rcpt] == job_id("spring", rcpt)
        assert m.message["From"] == "News <news@example.com>"
        assert m.message["Return-Path"] is None  # the receiving server adds it, not us
        senders.add(m.sender)
    assert len(senders) == len(ROWS)
    assert SECRET not in res.stdout + res.stderr


def test_without_the_option_the_envelope_sender_is_the_from_address(
    job: Path, smtpd: RecordingSMTPServer, cli: CLI
) -> None:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        env=ENV,  # a secret alone changes nothing
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert [m.sender for m in smtpd.messages] == ["news@example.com"] * len(ROWS)


def test_the_secret_may_come_from_a_file_and_the_option_from_the_environment(
    job: Path, smtpd: RecordingSMTPServer, cli: CLI
) -> None:
    (job / "secret").write_text(f"{SECRET}\n")
    env = {ENV_SECRET_FILE: str(job / "secret"), "MAILSPOOL_RETURN_PATH": BASE}
    res = cli("send", "r.csv", "--template", "t.txt",
              "--smtp", f"smtp://127.0.0.1:{smtpd.port}", env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    for m in smtpd.messages:
        assert read_return_path(Secrets([SECRET]), m.sender, BASE) is not None


def test_a_retry_of_refused_recipients_keeps_its_parents_address(tmp_path: Path, cli: CLI) -> None:
    """The retry job (a new id, the same message) is sent with the parent's envelope
    sender: a bounce for it names the parent job, whose recipients include it."""
    (tmp_path / "direct.csv").write_text(
        "to,cc,subject,body\nok@example.com,later@example.com,Hello,One message\n"
    )
    args = ("send", "direct.csv", "--from", "news@example.com", "--json", "--campaign", "c",
            "--retry-first", "0.2s", "--return-path", BASE)  # fmt: skip
    with RecordingSMTPServer() as srv:
        srv.handler.rcpt_replies["later@example.com"] = "451 4.2.1 mailbox busy"
        res = cli(*args, "--max-wait", "0s", "--smtp", f"smtp://127.0.0.1:{srv.port}", env=ENV)
        assert res.returncode == 75, res.stderr  # the retry for later@ is still due
        del srv.handler.rcpt_replies["later@example.com"]
        time.sleep(0.3)
        res = cli(*args, "--smtp", f"smtp://127.0.0.1:{srv.port}", env=ENV)
        assert res.returncode == 0, res.stderr
        first, second = srv.messages
    assert second.recipients == ["later@example.com"]
    assert first.sender == second.sender
    parent = read_return_path(Secrets([SECRET]), second.sender, BASE)
    ids = queued_ids(tmp_path / "mailspool.db")
    assert parent == ids["later@example.com,ok@example.com"]
    assert len(ids) == 2  # the parent and its retry, whose id is another


def test_a_redis_queue_carries_it_to_a_worker_without_the_secret(
    job: Path, smtpd: RecordingSMTPServer, cli: CLI, redis_url: str
) -> None:
    res = cli("enqueue", "r.csv", "--template", "t.txt", "--queue", redis_url,
              "--campaign", "spring", "--return-path", BASE, "--json", env=ENV)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["queued"] == len(ROWS)
    res = cli("worker", "--drain", "--queue", redis_url,
              "--smtp", f"smtp://127.0.0.1:{smtpd.port}")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(smtpd.messages) == len(ROWS)
    for m in smtpd.messages:
        (rcpt,) = m.recipients
        assert read_return_path(Secrets([SECRET]), m.sender, BASE) == job_id("spring", rcpt)
        assert m.message["From"] == "News <news@example.com>"


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--return-path", "bounces"], ENV, "--return-path"),
        (["--return-path", "bounces@"], ENV, "--return-path"),
        (["--return-path", "a-local-part-of-24-chars@x.example"], ENV, "at most 23"),
        (
            ["--return-path", BASE],
            {},
            f"--return-path needs a secret to sign its addresses: set {ENV_SECRET}",
        ),
        (
            ["--return-path", BASE],
            {ENV_SECRET: "too-short"},
            f"{ENV_SECRET}: the secret is 9 characters",
        ),
        (
            ["--return-path", BASE],
            {ENV_SECRET_FILE: "/nonexistent/secret"},
            f"{ENV_SECRET_FILE}: cannot read",
        ),
        ([], {**ENV, "MAILSPOOL_RETURN_PATH": "not an address"}, "--return-path"),
    ],
)
@pytest.mark.parametrize("command", ["send", "enqueue"])
def test_bad_values_and_missing_secrets_stop_at_start(
    job: Path, cli: CLI, command: str, args: list[str], env: dict[str, str], needle: str
) -> None:
    res = cli(command, "r.csv", "--template", "t.txt", *args, env=env)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert not (job / "mailspool.db").exists() or not queued_ids(job / "mailspool.db")


@pytest.mark.parametrize(
    ("args", "env"), [(["--return-path", "nope"], ENV), (["--return-path", BASE], {})]
)
def test_serve_stops_at_start_too(
    job: Path, cli: CLI, args: list[str], env: dict[str, str]
) -> None:
    res = cli(
        "serve", "--port", "0", *args, env={"MAILSPOOL_API_TOKENS": "t" * 32, **env}, timeout=60
    )
    assert res.returncode == 2
    assert "--return-path" in res.stderr and "Traceback" not in res.stderr
