"""Commands that only read never create a queue, and name what they cannot find; bad
option values and settings are errors (exit 2) with a message, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.cli import TEMPLATE, Result, write_csv


def test_reading_commands_without_a_queue_say_so_and_create_none(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    for args in (("status",), ("status", "--json"), ("dlq", "list")):
        res = cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "no queue at mailspool.db" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "mailspool.db").exists()


def test_bad_values_are_usage_errors_and_an_unknown_campaign_is_named(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    write_csv(tmp_path / "r.csv", [("ann", "ann@example.com")])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    assert cli("enqueue", "r.csv", "--template", "t.txt", "--campaign", "may").returncode == 0
    for args, said in (
        (("dlq", "list", "--since", "xx"), "bad duration 'xx'"),
        (("dlq", "retry", "--reason", "nosuch"), "invalid choice: 'nosuch'"),
    ):
        res = cli(*args)
        assert res.returncode == 2 and said in res.stderr and "Traceback" not in res.stderr, args
    res = cli("status", "--campaign", "nosuch")
    assert res.returncode == 1 and "no campaign nosuch" in res.stderr
    assert cli("status", "--campaign", "may").returncode == 0


def test_serve_with_a_relay_user_and_no_password_says_so_in_one_line(
    cli: Callable[..., Result],
) -> None:
    res = cli(
        "serve", "--port", "0", "--smtp", "smtp://user@relay.example.com",
        env={"MAILSPOOL_API_TOKENS": "tok-0123456789abcdef0123"},
    )  # fmt: skip
    assert res.returncode == 2
    assert "no password was found: set MAILSPOOL_SMTP_PASSWORD" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
