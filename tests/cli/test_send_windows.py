"""Send windows and send times, run as a user runs them, with windows built around the
present moment (never a wait for hours): a closed window holds every job, uncharged,
and ``status`` says how many wait and until when; ``--send-at`` a moment ahead delays
delivery until then; ``--timezone-column`` holds each recipient to their own clock; a
window added to a campaign whose jobs are already due holds them at claim time."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from mailspool.schedule import parse_windows
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def closed_window() -> tuple[str, str]:
    """Every day but today and tomorrow (UTC), all day: closed now, and still closed when
    the test ends even if it starts just before midnight; and when it opens."""
    today = utc_now()
    shut = {today.weekday(), (today.weekday() + 1) % 7}
    days = ",".join(d for i, d in enumerate(DAYS) if i not in shut)
    opens = dt.datetime.combine(today.date() + dt.timedelta(days=2), dt.time(), dt.UTC)
    return f"{days} 00:00-24:00", opens.strftime("%Y-%m-%dT%H:%M:%SZ")


def job(tmp_path: Path, rows: list[tuple[str, str]], header: str = "Name, Email") -> None:
    write_csv(tmp_path / "r.csv", rows, header)
    (tmp_path / "t.txt").write_text(TEMPLATE)


def status(cli: Callable[..., Result], campaign: str) -> dict[str, object]:
    res = cli("status", "--json", "--campaign", campaign)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def test_a_closed_window_holds_every_job_and_status_says_until_when(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    job(tmp_path, [(f"u{i}", f"u{i}@example.com") for i in range(5)])
    window, opens = closed_window()
    relay = f"smtp://127.0.0.1:{smtpd.port}"
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", relay, "--json",
              "--campaign", "later", "--window", window, "--timezone", "UTC")  # fmt: skip
    assert res.returncode == 75, res.stderr  # pending: run again, or a worker, later
    assert "5 pending (5 deferred); the deferred are due in their send window" in res.stderr
    summary = json.loads(res.stdout.splitlines()[-1])
    assert (summary["pending"], summary["deferred"]) == (5, 5)
    assert smtpd.messages == []
    st = status(cli, "later")
    assert (st["waiting"], st["next_due"], st.get("sent", 0)) == (5, opens, 0)
    shown = "; ".join(map(str, parse_windows(window)))
    assert st["schedule"] == {"windows": shown, "timezone": "UTC", "send_at": 0.0}
    text = cli("status", "--campaign", "later").stdout
    assert f"5 waiting, the next due {opens}" in text and "(UTC)" in text


def test_send_at_a_moment_ahead_delays_delivery_until_then(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    job(tmp_path, [(f"u{i}", f"u{i}@example.com") for i in range(3)])
    start = utc_now() + dt.timedelta(seconds=1.5)
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
              "--send-at", start.isoformat(), "--json")  # fmt: skip
    finished = time.time()
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["sent"] == 3 and len(smtpd.messages) == 3
    assert finished >= start.timestamp()


def test_each_recipient_is_held_to_their_own_clock(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    now = utc_now()
    # a zone whose date is not today's in UTC (one of the two always is)
    far = next(
        z for z in ("Etc/GMT-14", "Etc/GMT+12") if now.astimezone(ZoneInfo(z)).date() != now.date()
    )
    rows = [("utc", "a@example.com", "UTC"), ("far", "b@example.com", far),
            ("default", "c@example.com", ""), ("bad", "d@example.com", "Mars/Olympus")]  # fmt: skip
    write_csv(tmp_path / "r.csv", [(n, f"{e}, {z}") for n, e, z in rows], "Name, Email, Zone")
    (tmp_path / "t.txt").write_text(TEMPLATE)
    today = f"{DAYS[now.weekday()]} 00:00-24:00"
    res = cli("send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
              "--json", "--campaign", "zones", "--window", today, "--timezone", "UTC",
              "--timezone-column", "Zone")  # fmt: skip
    assert res.returncode == 75, res.stderr
    summary = json.loads(res.stdout.splitlines()[-1])
    assert (summary["sent"], summary["deferred"], summary["rejected"]) == (2, 1, 1)
    assert sorted(r for m in smtpd.messages for r in m.recipients) == [
        "a@example.com",
        "c@example.com",
    ]
    rejects = (tmp_path / "zones.rejects.csv").read_text()
    assert "Zone" in rejects and "not a timezone" in rejects


def test_a_window_added_later_holds_due_jobs_at_claim_time_uncharged(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    job(tmp_path, [(f"u{i}", f"u{i}@example.com") for i in range(4)])
    window, opens = closed_window()
    base = ("r.csv", "--template", "t.txt", "--campaign", "added", "--json")
    assert cli("enqueue", *base).returncode == 0  # due now
    again = cli("enqueue", *base, "--window", window, "--timezone", "UTC")
    assert json.loads(again.stdout)["pending"] == 4  # the same jobs, still due now
    res = cli("worker", "--drain", "--smtp", f"smtp://127.0.0.1:{smtpd.port}")
    assert res.returncode == 0, res.stderr
    assert smtpd.messages == []
    st = status(cli, "added")
    assert (st["waiting"], st["next_due"]) == (4, opens)
    assert "waiting for the send window: due " + opens in str(st["last_error"])
    db = sqlite3.connect(f"file:{tmp_path / 'mailspool.db'}?mode=ro", uri=True)
    rows = db.execute("SELECT state, attempts FROM jobs").fetchall()
    db.close()
    assert rows == [("deferred", 0)] * 4  # handed back, no attempt charged
