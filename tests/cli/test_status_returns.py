"""``mailspool status`` shows the returned mail recorded on the jobs: per campaign the
bounced, soft-bounced and complained counts; ``--job ID`` the job's latest bounce or
complaint and its diagnostic, which reaches the terminal without control characters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.inbound import Action
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.returned import HOSTILE, arf, dsn, feed, job_of

ROWS = [(f"user{i}", f"user{i}@example.com") for i in range(4)]


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'queue.db'}"


def test_status_shows_bounces_complaints_and_the_diagnostic(
    tmp_path: Path, queue_url: str, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    q = ("--queue", queue_url)
    smtp = f"smtp://127.0.0.1:{smtpd.port}"
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", smtp, "--campaign", "may", *q)
    assert res.returncode == 0, res.stderr
    # before anything comes back: the line is what it always was
    before = cli("status", *q)
    assert before.returncode == 0, before.stderr
    assert "bounced" not in before.stdout and "complained" not in before.stdout
    row = json.loads(cli("status", "--json", *q).stdout)[0]
    assert (row["bounced"], row["soft_bounced"], row["complained"]) == (0, 0, 0)

    mid = {m.recipients[0]: str(m.message["Message-ID"]) for m in smtpd.messages}
    handled = feed(
        queue_url,
        dsn("user0@example.com", mid["user0@example.com"], text=HOSTILE),
        dsn("user1@example.com", mid["user1@example.com"], status="4.2.2", text="mailbox full"),
        arf("user2@example.com", mid["user2@example.com"]),
    )
    assert [h.action for h in handled] == [Action.SUPPRESSED, Action.COUNTED, Action.SUPPRESSED]

    st = cli("status", "--campaign", "may", "--json", *q)
    assert st.returncode == 0, st.stderr
    row = json.loads(st.stdout)
    # the jobs stay sent: the counts of the run are still true
    assert (row["sent"], row["total"], row.get("dead", 0)) == (4, 4, 0)
    assert (row["bounced"], row["soft_bounced"], row["complained"]) == (1, 1, 1)
    text = cli("status", *q).stdout
    assert text.startswith("may: queued=0  sending=0  deferred=0  sent=4  dead=0")
    assert "total=4  bounced=1  soft_bounced=1  complained=1" in text

    bounced = handled[0].job
    assert bounced is not None
    shown = cli("status", "--job", bounced, *q)
    assert shown.returncode == 0, shown.stderr
    assert f"{bounced}: campaign=may  state=sent  attempts=1" in shown.stdout
    assert "returned: bounced 5.1.1 user0@example.com" in shown.stdout
    assert "mailbox unknown" in shown.stdout
    assert not any(c in shown.stdout for c in "\x1b\x07\r"), repr(shown.stdout)
    one = json.loads(cli("status", "--job", bounced, "--json", *q).stdout)
    assert one["state"] == "sent"
    last = one["last_return"]
    assert (last["kind"], last["recipient"], last["status"], last["permanent"]) == (
        "bounced", "user0@example.com", "5.1.1", True
    )  # fmt: skip
    assert "mailbox unknown" in last["diagnostic"] and "\x1b" not in last["diagnostic"]

    soft = json.loads(cli("status", "--job", str(handled[1].job), "--json", *q).stdout)
    assert soft["last_return"]["permanent"] is False
    assert "(not permanent)" in cli("status", "--job", str(handled[1].job), *q).stdout
    complaint = json.loads(cli("status", "--job", str(handled[2].job), "--json", *q).stdout)
    assert complaint["last_return"]["kind"] == "complained"

    quiet = job_of(queue_url, mid["user3@example.com"])
    untouched = cli("status", "--job", quiet, *q)
    assert "returned" not in untouched.stdout and "state=sent" in untouched.stdout
    assert json.loads(cli("status", "--job", quiet, "--json", *q).stdout)["last_return"] is None
    missing = cli("status", "--job", "0" * 32, *q)
    assert missing.returncode == 1 and "no job" in missing.stderr
