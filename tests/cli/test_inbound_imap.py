"""``mailspool inbound ingest --imap URL`` as a user runs it, against a private Dovecot:
a real bounce and a complaint about messages sent with the real CLI are put in the
bounce mailbox, applied, and moved to the processed folder; a second run finds nothing;
a wrong password, and a server without STARTTLS, stop it cleanly; --imap-poll runs
until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.message.verp import ENV_SECRET
from mailspool.testing import LineServer, RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.imap import Dovecot
from tests.support.returned import arf, job_of

BOUNCES = Path(__file__).parents[1] / "inbound" / "data" / "bounces"
SECRET = "imap-return-path-secret-" + "s" * 30
BASE = "bounces@bounce.example.com"
# dsn_04.txt is a real DSN (PMDF) for this address (expected.json)
BOUNCED = "max.haas@unibas.ch"
COMPLAINED = "user2@example.com"

Cli = Callable[..., Result]


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


def send(tmp_path: Path, cli: Cli, smtpd: RecordingSMTPServer, queue: str) -> dict[str, Any]:
    """Send to BOUNCED and COMPLAINED with VERP return paths: per recipient, its message."""
    write_csv(tmp_path / "r.csv", [("Max", BOUNCED), ("Two", COMPLAINED)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
              "--queue", queue, "--return-path", BASE, env={ENV_SECRET: SECRET})  # fmt: skip
    assert res.returncode == 0, res.stderr
    return {m.recipients[0]: m for m in smtpd.messages}


def real_bounce(delivered_to: str) -> bytes:
    """dsn_04.txt as a mailbox delivery stores it: its mbox From line gone, a
    Delivered-To header on top (the VERP address it came back to), CRLF line ends."""
    text = (BOUNCES / "dsn_04.txt").read_bytes().split(b"\n", 1)[1]
    return b"\r\n".join([f"Delivered-To: {delivered_to}".encode(), *text.splitlines()]) + b"\r\n"


def ingest(cli: Cli, queue: str, url: str, *args: str, env: dict[str, str]) -> Result:
    return cli("inbound", "ingest", "--imap", url, "--queue", queue, "--return-path", BASE,
               *args, env={ENV_SECRET: SECRET, **env})  # fmt: skip


def test_a_bounce_and_a_complaint_are_applied_and_moved_and_a_second_run_finds_nothing(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli, dovecot: Dovecot
) -> None:
    sent = send(tmp_path, cli, smtpd, sqlite)
    dovecot.append(
        real_bounce(sent[BOUNCED].sender),
        arf(COMPLAINED, str(sent[COMPLAINED].message["Message-ID"])),
    )
    env = {"MAILSPOOL_IMAP_PASSWORD": dovecot.password}
    res = ingest(cli, sqlite, dovecot.url(), "--json", env=env)
    assert res.returncode == 0, res.stderr
    bounce, complaint = (json.loads(line) for line in res.stdout.splitlines())
    inbox = f"imaps://test@127.0.0.1:{dovecot.imaps_port}/INBOX"
    assert bounce == {
        "file": f"{inbox}/;UID=1", "position": 1, "kind": "dsn",
        "recipients": [{"address": BOUNCED, "status": "5.0.0", "permanent": True}],
        "job": job_of(sqlite, str(sent[BOUNCED].message["Message-ID"])),
        "action": "suppressed", "new": True,
    }  # fmt: skip
    assert complaint["file"] == f"{inbox}/;UID=2"
    assert (complaint["kind"], complaint["action"], complaint["new"]) == ("arf", "suppressed", True)
    assert complaint["job"] == job_of(sqlite, str(sent[COMPLAINED].message["Message-ID"]))
    assert "2 messages: 2 suppressed, 0 counted, 0 unmatched" in res.stderr
    listed = cli("suppress", "list", "--json", "--queue", sqlite)
    assert {e["address"]: e["reason"] for e in json.loads(listed.stdout)} == {
        BOUNCED: "bounced",
        COMPLAINED: "complained",
    }
    assert dovecot.count("INBOX") == 0
    assert dovecot.count("mailspool-processed") == 2
    assert dovecot.password not in res.stdout + res.stderr

    # again, over STARTTLS, the password from a file: nothing left to read
    (tmp_path / "pw").write_text(dovecot.password + "\n")
    again = ingest(cli, sqlite, dovecot.url(scheme="imap"), "--json",
                   env={"MAILSPOOL_IMAP_PASSWORD_FILE": str(tmp_path / "pw")})  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert "0 messages: 0 suppressed" in again.stderr
    assert dovecot.count("mailspool-processed") == 2


def test_a_wrong_password_is_a_clear_error(sqlite: str, cli: Cli, dovecot: Dovecot) -> None:
    dovecot.append(arf(COMPLAINED, "<nobody@example.com>"))
    wrong = "not-the-password"
    res = ingest(cli, sqlite, dovecot.url(), env={"MAILSPOOL_IMAP_PASSWORD": wrong})
    assert res.returncode == 2
    assert "login refused" in res.stderr and "Traceback" not in res.stderr
    assert wrong not in res.stderr + res.stdout
    assert dovecot.count("INBOX") == 1


def test_no_password_is_sent_without_starttls(sqlite: str, cli: Cli) -> None:
    def imap(line: str) -> str:
        tag, _, command = line.partition(" ")
        if command.upper() == "CAPABILITY":
            return f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done"
        return f"{tag} OK done"

    password = "never-sent-in-plaintext"
    with LineServer(imap, greeting="* OK IMAP4rev1 ready") as server:
        res = ingest(cli, sqlite, f"imap://test@127.0.0.1:{server.port}/INBOX",
                     env={"MAILSPOOL_IMAP_PASSWORD": password})  # fmt: skip
    assert res.returncode == 2
    assert "offers no STARTTLS: refusing to send the password" in res.stderr
    assert "Traceback" not in res.stderr
    assert not any("LOGIN" in line.upper() or password in line for line in server.lines)


def test_polling_runs_until_sigterm(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli, dovecot: Dovecot
) -> None:
    sent = send(tmp_path, cli, smtpd, sqlite)
    dovecot.append(arf(COMPLAINED, str(sent[COMPLAINED].message["Message-ID"])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    env.update({"MAILSPOOL_IMAP_PASSWORD": dovecot.password, ENV_SECRET: SECRET})
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailspool", "inbound", "ingest", "--imap", dovecot.url(),
         "--queue", sqlite, "--imap-poll", "60s", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # the first pass has read the message
        assert (first["kind"], first["action"]) == ("arf", "suppressed")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""
    assert "1 messages: 1 suppressed" in err
    assert dovecot.count("INBOX") == 0
