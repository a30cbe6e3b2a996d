"""``mailspool campaign list|show|pause|resume|cancel``, how ``send``, ``enqueue`` and
``worker --drain`` meet a paused or cancelled campaign, and ``status``'s view of them,
run as a user runs mailspool (subprocesses on a SQLite queue)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.cli import TEMPLATE, Result, write_csv


def queued(cli: Callable[..., Result], tmp_path: Path, campaign: str, n: int) -> None:
    write_csv(tmp_path / f"{campaign}.csv", [(f"u{i}", f"u{i}@example.com") for i in range(n)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("enqueue", f"{campaign}.csv", "--template", "t.txt", "--campaign", campaign)
    assert res.returncode == 0, res.stderr


def as_json(res: Result) -> object:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_pause_resume_and_cancel_are_idempotent_and_status_shows_them(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queued(cli, tmp_path, "spring", 5)
    queued(cli, tmp_path, "autumn", 2)
    (row, _) = as_json(cli("campaign", "list", "--json"))  # type: ignore[misc]
    assert (row["campaign"], row["state"], row["queued"], row["cancelled"]) == (
        "autumn", "active", 2, 0
    )  # fmt: skip
    for _ in range(2):
        paused = as_json(cli("campaign", "pause", "spring", "--json"))
        assert paused == {"campaign": "spring", "state": "paused", "cancelled": 0}
    shown = as_json(cli("campaign", "show", "spring", "--json"))
    assert shown["state"] == "paused" and shown["queued"] == 5  # type: ignore[index]
    res = cli("status")
    assert "spring [paused]: queued=5" in res.stdout and "autumn: queued=2" in res.stdout
    for _ in range(2):
        assert as_json(cli("campaign", "resume", "spring", "--json"))["state"] == "active"  # type: ignore[index]
    cancelled = as_json(cli("campaign", "cancel", "spring", "--json"))
    assert cancelled == {"campaign": "spring", "state": "cancelled", "cancelled": 5}
    again = cli("campaign", "cancel", "spring")
    assert again.returncode == 0 and "0 queued or deferred jobs cancelled" in again.stdout
    st = {r["campaign"]: r for r in as_json(cli("status", "--json"))}  # type: ignore[attr-defined]
    assert st["spring"]["state"] == "cancelled" and st["spring"]["cancelled"] == 5
    assert st["spring"]["pending"] == 0 and st["autumn"]["state"] == "active"
    assert "spring [cancelled]:" in cli("status").stdout
    listed = cli("campaign", "list").stdout
    assert "spring  cancelled  queued=0" in listed and "cancelled=5" in listed
    # a cancelled campaign stays so
    for action in ("pause", "resume"):
        res = cli("campaign", action, "spring")
        assert res.returncode == 1 and "spring is cancelled: it cannot be" in res.stderr


def test_an_unknown_or_ill_named_campaign_is_refused(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queued(cli, tmp_path, "spring", 1)
    for action in ("show", "pause", "resume", "cancel"):
        res = cli("campaign", action, "winter")
        assert res.returncode == 1 and "no campaign winter in this queue" in res.stderr
        res = cli("campaign", action, ".hidden")
        assert res.returncode == 2 and "a campaign name is" in res.stderr
        assert "Traceback" not in res.stderr
    assert as_json(cli("campaign", "show", "spring", "--json"))["state"] == "active"  # type: ignore[index]


def test_send_refuses_a_paused_campaign_with_75_and_a_cancelled_one_with_1(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queued(cli, tmp_path, "spring", 3)
    assert cli("campaign", "pause", "spring").returncode == 0
    send = ("send", "spring.csv", "--template", "t.txt", "--campaign", "spring")
    res = cli(*send)
    assert res.returncode == 75, res.stderr
    assert "campaign spring is paused: nothing sent" in res.stderr
    assert "mailspool campaign resume spring" in res.stderr
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").rglob("*.eml"))
    assert cli("campaign", "cancel", "spring").returncode == 0
    res = cli(*send)
    assert res.returncode == 1 and "campaign spring was cancelled: nothing sent" in res.stderr
    res = cli("enqueue", "spring.csv", "--template", "t.txt", "--campaign", "spring")
    assert res.returncode == 1 and "was cancelled: nothing queued" in res.stderr


def test_enqueue_to_a_paused_campaign_queues_rows_that_wait_and_drain_leaves_them(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    queued(cli, tmp_path, "spring", 2)
    assert cli("campaign", "pause", "spring").returncode == 0
    write_csv(tmp_path / "more.csv", [("v", "v@example.com")])
    res = cli("enqueue", "more.csv", "--template", "t.txt", "--campaign", "spring")
    assert res.returncode == 0 and "campaign spring is paused: its jobs wait" in res.stderr
    queued(cli, tmp_path, "autumn", 1)
    # --drain exits once nothing but the paused campaign's jobs is due (to the outbox)
    res = cli("worker", "--drain", "--log-level", "warning", timeout=60)
    assert res.returncode == 0, res.stderr
    st = {r["campaign"]: r for r in as_json(cli("status", "--json"))}  # type: ignore[attr-defined]
    assert st["spring"]["queued"] == 3 and st["autumn"]["sent"] == 1
    assert cli("campaign", "resume", "spring").returncode == 0
    assert cli("worker", "--drain", "--log-level", "warning", timeout=60).returncode == 0
    assert as_json(cli("status", "--campaign", "spring", "--json"))["sent"] == 3  # type: ignore[index]
