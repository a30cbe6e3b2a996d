"""``mailspool dlq``: list, show, retry and purge dead letters, with filters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mailspool.testing import SMTPSink

from .conftest import TEMPLATE, Result, write_csv


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
