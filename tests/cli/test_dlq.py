"""``mailspool dlq``: list, show, retry and purge dead letters, with filters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.testing import SMTPSink
from tests.support.cli import TEMPLATE, Result, write_csv


def test_dlq_list_show_retry_purge(
    tmp_path: Path, cli: Callable[..., Result], smtp_sink: Callable[..., SMTPSink]
) -> None:
    write_csv(tmp_path / "a.csv", [(f"a{i}", f"a{i}@example.com") for i in range(3)])
    write_csv(tmp_path / "b.csv", [(f"b{i}", f"b{i}@example.com") for i in range(2)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    hard = smtp_sink("-f", "rcpt")
    for name in ("a", "b"):
        res = cli(
            "send", f"{name}.csv", "--template", "t.txt", "--campaign", name,
            "--smtp", f"smtp://127.0.0.1:{hard.port}",
        )  # fmt: skip
        assert res.returncode == 1
    listed = json.loads(cli("dlq", "list", "--json").stdout)
    assert len(listed) == 5
    assert {d["reason"] for d in listed} == {"rejected_permanent"}
    assert len(json.loads(cli("dlq", "list", "--campaign", "a", "--json").stdout)) == 3
    assert json.loads(cli("dlq", "list", "--reason", "expired", "--json").stdout) == []
    assert len(json.loads(cli("dlq", "list", "--since", "1h", "--json").stdout)) == 5

    one = listed[0]
    shown = json.loads(cli("dlq", "show", one["id"], "--json").stdout)
    assert shown["id"] == one["id"] and shown["state"] == "dead"
    assert shown["last_reply"].startswith("5") and shown["message_id"] == one["message_id"]
    assert cli("dlq", "show", "nosuchid").returncode == 1

    # retry campaign a against a relay that accepts: same Message-ID, delivered
    good = smtp_sink(dump=True)
    assert json.loads(cli("dlq", "retry", "--campaign", "a", "--json").stdout) == {"retry": 3}
    res = cli("worker", "--drain", "--smtp", f"smtp://127.0.0.1:{good.port}")
    assert res.returncode == 0, res.stderr
    delivered = {rcpts[0]: mid for rcpts, mid in good.received()}
    assert set(delivered) == {f"a{i}@example.com" for i in range(3)}
    before = {d["recipients"][0]: d["message_id"] for d in listed if d["campaign"] == "a"}
    assert delivered == before

    assert json.loads(cli("dlq", "purge", "--campaign", "b", "--json").stdout) == {"purge": 2}
    assert json.loads(cli("dlq", "list", "--json").stdout) == []
    st = {r["campaign"]: r for r in json.loads(cli("status", "--json").stdout)}
    assert st["a"]["sent"] == 3 and "b" not in st


@pytest.fixture
def three_kinds(
    tmp_path: Path, cli: Callable[..., Result], smtp_sink: Callable[..., SMTPSink]
) -> dict[str, set[str]]:
    """Dead letters that the filters can tell apart, by campaign:

    - ``old``: 3 refused at RCPT (rejected_permanent), dead for three hours;
    - ``big``: 2 refused after the final dot with 552 5.3.4 (too_large), dead now;
    - ``new``: 2 refused at RCPT (rejected_permanent), dead now.

    Returns each campaign's dead letter ids."""
    (tmp_path / "t.txt").write_text(TEMPLATE)
    hard = smtp_sink("-f", "rcpt")
    too_big = smtp_sink("-B", "552 5.3.4 message too big", "-f", ".")
    for name, n, sink in (("old", 3, hard), ("big", 2, too_big), ("new", 2, hard)):
        write_csv(
            tmp_path / f"{name}.csv", [(f"{name}{i}", f"{name}{i}@example.com") for i in range(n)]
        )
        res = cli(
            "send", f"{name}.csv", "--template", "t.txt", "--campaign", name,
            "--smtp", f"smtp://127.0.0.1:{sink.port}",
        )  # fmt: skip
        assert res.returncode == 1, res.stderr
    with sqlite3.connect(tmp_path / "mailspool.db") as db:
        db.execute("UPDATE jobs SET updated_at = updated_at - 3 * 3600 WHERE campaign = 'old'")
    ids: dict[str, set[str]] = {"old": set(), "big": set(), "new": set()}
    for d in dlq(cli, "list"):
        ids[d["campaign"]].add(d["id"])
    assert {k: len(v) for k, v in ids.items()} == {"old": 3, "big": 2, "new": 2}
    return ids


def dlq(cli: Callable[..., Result], *args: str) -> Any:
    res = cli("dlq", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def listed(cli: Callable[..., Result], *filters: str) -> set[str]:
    return {d["id"] for d in dlq(cli, "list", *filters)}


def states(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "mailspool.db") as db:
        return dict(db.execute("SELECT id, state FROM jobs").fetchall())


def test_dlq_list_filters_split_the_dead_letters(
    three_kinds: dict[str, set[str]], cli: Callable[..., Result]
) -> None:
    old, big, new = three_kinds["old"], three_kinds["big"], three_kinds["new"]
    reasons = {d["id"]: d["reason"] for d in dlq(cli, "list")}
    assert {reasons[i] for i in big} == {"too_large"}
    assert {reasons[i] for i in old | new} == {"rejected_permanent"}

    assert listed(cli, "--reason", "too_large") == big
    assert listed(cli, "--reason", "rejected_permanent") == old | new
    assert listed(cli, "--since", "2h") == big | new  # the three-hour-old ones are out
    assert listed(cli, "--since", "4h") == old | big | new
    assert listed(cli, "--since", "2h", "--reason", "rejected_permanent") == new
    assert listed(cli, "--since", "2h", "--campaign", "old") == set()
    assert listed(cli, "--reason", "too_large", "--campaign", "new") == set()


def test_dlq_retry_and_purge_touch_only_the_matching_dead_letters(
    tmp_path: Path, three_kinds: dict[str, set[str]], cli: Callable[..., Result]
) -> None:
    old, big, new = three_kinds["old"], three_kinds["big"], three_kinds["new"]

    # retry the recent permanent refusals only: not the old ones, not the too-large ones
    assert dlq(cli, "retry", "--reason", "rejected_permanent", "--since", "2h") == {"retry": 2}
    st = states(tmp_path)
    assert {st[i] for i in new} == {"queued"}
    assert {st[i] for i in old | big} == {"dead"}
    assert listed(cli) == old | big

    # purge what died in the last two hours: the too-large ones (the retried ones are no
    # longer dead, the old ones are too old)
    assert dlq(cli, "purge", "--since", "2h") == {"purge": 2}
    st = states(tmp_path)
    assert not big & st.keys()
    assert {st[i] for i in new} == {"queued"} and {st[i] for i in old} == {"dead"}

    # a reason that matches nothing any more removes nothing
    assert dlq(cli, "purge", "--reason", "too_large") == {"purge": 0}
    assert listed(cli) == old

    # retry by reason alone reaches the old ones too
    assert dlq(cli, "retry", "--reason", "rejected_permanent") == {"retry": 3}
    assert listed(cli) == set()
    assert {states(tmp_path)[i] for i in old | new} == {"queued"}
