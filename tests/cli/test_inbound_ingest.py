"""``mailspool inbound ingest`` as a user runs it: messages sent with the real CLI to a
recording SMTP server, then their bounces and complaints written as files (single
messages, an mbox, a Maildir) and ingested: what each message does to the suppression
list, the ``--json`` lines, the soft-bounce settings, unreadable paths, a second run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.message.unsubscribe import Secrets
from mailspool.message.verp import ENV_SECRET, read_return_path
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.returned import arf, dsn, job_of

ROWS = [(f"user{i}", f"user{i}@example.com") for i in range(4)]
BOUNCES = Path(__file__).parents[1] / "inbound" / "data" / "bounces"
SECRET = "ingest-return-path-secret-" + "s" * 30
BASE = "bounces@bounce.example.com"
FIELDS = ["file", "position", "kind", "recipients", "job", "action", "new"]

Cli = Callable[..., Result]


def send(tmp_path: Path, cli: Cli, smtpd: RecordingSMTPServer, queue: str, *extra: str,
         env: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """Send ROWS through ``smtpd``; each recipient's Message-ID."""
    write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    smtp = f"smtp://127.0.0.1:{smtpd.port}"
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", smtp, "--campaign", "may",
              "--queue", queue, *extra, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return {m.recipients[0]: str(m.message["Message-ID"]) for m in smtpd.messages}


def ingest(cli: Cli, queue: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return cli("inbound", "ingest", "--queue", queue, *args, env=env)


def rows(res: Result) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in res.stdout.splitlines()]
    for r in out:
        assert list(r) == FIELDS
        assert isinstance(r["file"], str) and isinstance(r["position"], int)
        assert r["job"] is None or isinstance(r["job"], str)
        assert isinstance(r["new"], bool)
        for rcpt in r["recipients"]:
            assert list(rcpt) == ["address", "status", "permanent"]
            assert rcpt["address"] == rcpt["address"].lower()
            assert isinstance(rcpt["permanent"], bool)
    return out


def suppressed(cli: Cli, queue: str) -> dict[str, str]:
    res = cli("suppress", "list", "--json", "--queue", queue)
    assert res.returncode == 0, res.stderr
    return {e["address"]: e["reason"] for e in json.loads(res.stdout)}


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


def test_bounces_and_a_complaint_suppress_and_a_second_run_records_nothing(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    mid = send(tmp_path, cli, smtpd, sqlite)
    (tmp_path / "hard.eml").write_bytes(dsn("User0@Example.com", mid["user0@example.com"]))
    (tmp_path / "fbl.eml").write_bytes(arf("user2@example.com", mid["user2@example.com"]))
    res = ingest(cli, sqlite, "hard.eml", "fbl.eml", "--json")
    assert res.returncode == 0, res.stderr
    hard, fbl = rows(res)
    assert hard == {
        "file": "hard.eml", "position": 1, "kind": "dsn",
        "recipients": [{"address": "user0@example.com", "status": "5.1.1", "permanent": True}],
        "job": job_of(sqlite, mid["user0@example.com"]), "action": "suppressed", "new": True,
    }  # fmt: skip
    assert (fbl["kind"], fbl["action"], fbl["new"]) == ("arf", "suppressed", True)
    assert fbl["job"] == job_of(sqlite, mid["user2@example.com"])
    assert "2 messages: 2 suppressed, 0 counted, 0 unmatched" in res.stderr
    assert suppressed(cli, sqlite) == {
        "user0@example.com": "bounced",
        "user2@example.com": "complained",
    }

    again = ingest(cli, sqlite, "hard.eml", "fbl.eml", "--json")
    assert again.returncode == 0, again.stderr
    assert [(r["action"], r["new"]) for r in rows(again)] == [("suppressed", False)] * 2
    status = json.loads(cli("status", "--campaign", "may", "--json", "--queue", sqlite).stdout)
    assert (status["bounced"], status["complained"], status["sent"]) == (1, 1, 4)

    text = ingest(cli, sqlite, "hard.eml")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"hard.eml: dsn  suppressed  job {hard['job']}  user0@example.com 5.1.1  (already handled)",
        "1 messages: 1 suppressed, 0 counted, 0 unmatched",
    ]


def test_soft_bounces_are_counted_until_the_limit(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    mid = send(tmp_path, cli, smtpd, sqlite)
    for n in range(3):
        data = dsn("user1@example.com", mid["user1@example.com"], status="4.2.2",
                   text=f"mailbox full ({n})")  # fmt: skip
        (tmp_path / f"soft{n}.eml").write_bytes(data)
    first = ingest(cli, sqlite, "soft0.eml", "--json", "--soft-bounce-limit", "3")
    (r,) = rows(first)
    assert r["recipients"] == [{"address": "user1@example.com", "status": "4.2.2",
                                "permanent": False}]  # fmt: skip
    assert r["action"] == "counted"
    # the same file again counts nothing: still one temporary bounce
    res = ingest(cli, sqlite, "soft0.eml", "soft1.eml", "--json", "--soft-bounce-limit", "3")
    assert [(r["action"], r["new"]) for r in rows(res)] == [("counted", False), ("counted", True)]
    assert "user1@example.com" not in suppressed(cli, sqlite)
    res = ingest(cli, sqlite, "soft2.eml", "--json", "--soft-bounce-limit", "3")
    assert [r["action"] for r in rows(res)] == ["suppressed"]
    assert suppressed(cli, sqlite) == {"user1@example.com": "bounced"}


def test_soft_bounce_settings_from_the_file_and_the_environment(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    mid = send(tmp_path, cli, smtpd, sqlite)
    (tmp_path / "soft.eml").write_bytes(
        dsn("user3@example.com", mid["user3@example.com"], status="4.2.2")
    )
    (tmp_path / "mailspool.toml").write_text('soft-bounce-limit = 1\nsoft-bounce-window = "1d"\n')
    res = ingest(cli, sqlite, "soft.eml", "--json")
    assert [r["action"] for r in rows(res)] == ["suppressed"], res.stderr

    for args, env, named in [
        (["--soft-bounce-limit", "0"], {}, "soft_bounce_limit"),
        ([], {"MAILSPOOL_SOFT_BOUNCE_WINDOW": "a week"}, "soft_bounce_window"),
        (["--unsubscribe-address", "not an address"], {}, "unsubscribe_address"),
    ]:
        bad = ingest(cli, sqlite, "soft.eml", *args, env=env)
        assert bad.returncode == 2 and named in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr and bad.stdout == ""


def test_an_mbox_a_maildir_and_a_directory_of_eml_files(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    mid = send(tmp_path, cli, smtpd, sqlite)
    box = b""
    for rcpt in ("user0@example.com", "user1@example.com"):
        box += b"From MAILER-DAEMON Mon Jun  2 10:00:00 2025\n"
        box += dsn(rcpt, mid[rcpt]).replace(b"\r\n", b"\n") + b"\n"
    (tmp_path / "bounces.mbox").write_bytes(box)
    maildir = tmp_path / "Maildir"
    for part in ("cur", "new", "tmp"):
        (maildir / part).mkdir(parents=True)
    (maildir / "new" / "1717000000.M1P1.host").write_bytes(
        arf("user2@example.com", mid["user2@example.com"])
    )
    emls = tmp_path / "emls"
    emls.mkdir()
    (emls / "a.eml").write_bytes(dsn("user3@example.com", mid["user3@example.com"]))
    (emls / "notes.txt").write_text("not a message of this directory")

    res = ingest(cli, sqlite, "bounces.mbox", "Maildir", "emls", "--json")
    assert res.returncode == 0, res.stderr
    found = [(r["file"], r["position"], r["kind"], r["action"]) for r in rows(res)]
    assert found == [
        ("bounces.mbox", 1, "dsn", "suppressed"),
        ("bounces.mbox", 2, "dsn", "suppressed"),
        ("Maildir/new/1717000000.M1P1.host", 1, "arf", "suppressed"),
        ("emls/a.eml", 1, "dsn", "suppressed"),
    ]
    assert set(suppressed(cli, sqlite)) == {f"user{i}@example.com" for i in range(4)}


def test_unmatched_garbage_and_an_unreadable_path(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    send(tmp_path, cli, smtpd, sqlite)
    shutil.copy(BOUNCES / "dsn_04.txt", tmp_path / "real.eml")
    (tmp_path / "garbage.eml").write_bytes(b"\x00\xff\xfe not mail at all \x1b[2J")
    res = ingest(cli, sqlite, "real.eml", "missing.eml", "garbage.eml", "--json")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "cannot read missing.eml" in res.stderr
    real, garbage = rows(res)
    assert (real["kind"], real["job"], real["action"]) == ("dsn", None, "unmatched")
    assert real["recipients"] == [{"address": "max.haas@unibas.ch", "status": "5.0.0",
                                   "permanent": True}]  # fmt: skip
    assert (garbage["kind"], garbage["recipients"]) == ("unknown", [])
    assert (garbage["job"], garbage["action"]) == (None, "unmatched")
    assert "2 messages: 0 suppressed, 0 counted, 2 unmatched; 1 could not be read" in res.stderr
    assert suppressed(cli, sqlite) == {}
    # kept, and listed: mailspool inbound unmatched
    listed = cli("inbound", "unmatched", "--queue", sqlite, "--json", "--write", "kept")
    assert listed.returncode == 0, listed.stderr
    kept = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(kept) == 2 and all(k["reason"] for k in kept)
    files = {k["digest"]: (tmp_path / "kept" / f"{k['digest']}.eml").read_bytes() for k in kept}
    [dsn_row] = [k for k in kept if b"max.haas@unibas.ch" in files[k["digest"]]]
    assert not dsn_row["truncated"] and dsn_row["size"] == len(files[dsn_row["digest"]])
    # what was written is a message ingest reads again: a returned message, the same
    again = ingest(cli, sqlite, f"kept/{dsn_row['digest']}.eml", "--json")
    assert rows(again)[0]["recipients"] == real["recipients"]
    text = cli("inbound", "unmatched", "--queue", sqlite, "--limit", "1")
    assert text.returncode == 0 and text.stdout.startswith("2 unmatched returned messages kept")
    bad = cli("inbound", "unmatched", "--queue", sqlite, "--limit", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_bounce_to_the_verp_address_names_its_job_by_the_token(
    tmp_path: Path, sqlite: str, smtpd: RecordingSMTPServer, cli: Cli
) -> None:
    env = {ENV_SECRET: SECRET}
    send(tmp_path, cli, smtpd, sqlite, "--return-path", BASE, env=env)
    verp = {m.recipients[0]: m.sender for m in smtpd.messages}
    # no Message-ID anywhere: only the address it was delivered to names the job
    data = dsn("user1@example.com", "<unknown@elsewhere.example>")
    data = f"Delivered-To: {verp['user1@example.com']}\r\n".encode() + data
    (tmp_path / "verp.eml").write_bytes(data)

    without = ingest(cli, sqlite, "verp.eml", "--json")
    assert [r["action"] for r in rows(without)] == ["unmatched"]
    res = ingest(cli, sqlite, "verp.eml", "--json", "--return-path", BASE, env=env)
    assert res.returncode == 0, res.stderr
    (r,) = rows(res)
    assert (r["action"], r["new"]) == ("suppressed", True)
    assert r["job"] == read_return_path(Secrets([SECRET]), verp["user1@example.com"], BASE)
    status = json.loads(cli("status", "--job", r["job"], "--json", "--queue", sqlite).stdout)
    assert status["last_return"]["recipient"] == "user1@example.com"
    assert SECRET not in res.stdout + res.stderr

    missing = ingest(cli, sqlite, "verp.eml", "--return-path", BASE)
    assert missing.returncode == 2 and ENV_SECRET in missing.stderr, missing.stderr


def test_on_redis(tmp_path: Path, redis_url: str, smtpd: RecordingSMTPServer, cli: Cli) -> None:
    mid = send(tmp_path, cli, smtpd, redis_url)
    (tmp_path / "hard.eml").write_bytes(dsn("user0@example.com", mid["user0@example.com"]))
    res = ingest(cli, redis_url, "hard.eml", "--json")
    assert [(r["action"], r["job"]) for r in rows(res)] == [
        ("suppressed", job_of(redis_url, mid["user0@example.com"]))
    ]
    again = ingest(cli, redis_url, "hard.eml", "--json")
    assert [r["new"] for r in rows(again)] == [False]
    assert suppressed(cli, redis_url) == {"user0@example.com": "bounced"}
