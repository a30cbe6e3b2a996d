"""The deliverability commands as a user runs them: ``dkim keygen``, ``suppress`` (add,
list, remove, import, export) on the SQLite queue, and the options ``send``, ``enqueue``,
``serve`` and ``preview`` take."""

from __future__ import annotations

import csv
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.cli.parser import REASONS, build_parser
from mailspool.config import Settings, load_settings, option_name
from mailspool.queue.suppression import Reason
from tests.support.cli import Result
from tests.support.dkim import txt_records

CLI = Callable[..., Result]


# -- dkim keygen -----------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "k"), [("rsa", "rsa"), ("ed25519", "ed25519")])
def test_keygen_prints_the_record_and_writes_a_private_key(
    cli: CLI, tmp_path: Path, algorithm: str, k: str
) -> None:
    res = cli("dkim", "keygen", "Example.COM", "--selector", "s1", "--algorithm", algorithm,
              "--out", "keys")  # fmt: skip
    assert res.returncode == 0, res.stderr
    (record,) = res.stdout.splitlines()  # the record alone on stdout
    assert record.startswith('s1._domainkey.example.com. IN TXT "v=DKIM1; k=')
    (value,) = txt_records([record]).values()
    assert value.startswith(f"v=DKIM1; k={k}; p=".encode())
    key = tmp_path / "keys" / "example.com.s1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = [line for line in key.read_text().splitlines() if not line.startswith("-----")]
    # the private part: an RSA key's lines after its modulus (which the record holds too),
    # an Ed25519 key's seed
    secret = lines[8:] if algorithm == "rsa" else lines
    assert secret and not any(line in res.stdout + res.stderr for line in secret)
    assert "PRIVATE" not in res.stdout + res.stderr
    assert f"--dkim example.com:s1:{key}" in res.stderr


def test_keygen_refuses_what_it_cannot_do(cli: CLI, tmp_path: Path) -> None:
    assert cli("dkim", "keygen", "example.com", "--selector", "s1").returncode == 0
    again = cli("dkim", "keygen", "example.com", "--selector", "s1")
    assert again.returncode == 2 and "already exists" in again.stderr
    for args, said in (
        (["--selector", "bad selector"], "selector"),
        (["--selector", "s2", "--bits", "512"], "512"),
        (["--selector", "s3", "--algorithm", "ed25519", "--bits", "2048"], "--bits"),
    ):
        res = cli("dkim", "keygen", "example.com", *args)
        assert res.returncode == 2, args
        assert said in res.stderr and res.stdout == ""
    assert cli("dkim", "keygen", "not a domain", "--selector", "s4").returncode == 2
    assert sorted(p.name for p in tmp_path.glob("*.key")) == ["example.com.s1.key"]


# -- the options of the commands that make messages ------------------------------------


@pytest.mark.parametrize("command", ["send", "enqueue", "serve", "preview"])
def test_the_deliverability_options_reach_the_settings(command: str) -> None:
    source = [] if command == "serve" else ["r.csv"]
    args = build_parser().parse_args(
        [command, *source, "--dkim", "example.com:s1:a.key", "--dkim", "example.com:e1:b.key",
         "--dkim-required", "--unsubscribe-url", "https://mail.example.com/u", "--list", "news"]
    )  # fmt: skip
    # as main() gives them
    given = {k: getattr(args, k, None) for k in map(option_name, Settings.model_fields)}
    settings = load_settings(**given)
    assert settings.dkim == ["example.com:s1:a.key", "example.com:e1:b.key"]
    assert settings.dkim_required is True
    assert settings.unsubscribe_url == "https://mail.example.com/u"
    assert settings.list_name == "news"
    # not given: the environment and the file still decide
    args = build_parser().parse_args([command, *source])
    assert (args.dkim, args.dkim_required, args.unsubscribe_url, args.list) == (None,) * 4


def test_the_parser_knows_every_reason() -> None:
    assert set(REASONS) == {r.value for r in Reason}


# -- suppress --------------------------------------------------------------------------


def listed(cli: CLI, *args: str) -> list[dict[str, object]]:
    res = cli("suppress", "list", "--json", *args)
    assert res.returncode == 0, res.stderr
    found: list[dict[str, object]] = json.loads(res.stdout)
    return found


def test_add_list_remove(cli: CLI) -> None:
    res = cli("suppress", "add", "Ann@Example.com", "@Spam.Example")
    assert res.returncode == 0, res.stderr
    res = cli("suppress", "add", "bob@example.com", "--list", "news", "--reason", "bounced",
              "--expires", "30d")  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = cli("suppress", "add", "cat@example.com", "--list", "news", "--expires", "2999-01-01")
    assert res.returncode == 0, res.stderr
    everything = {(e["address"], e["list"]): e for e in listed(cli)}
    assert set(everything) == {
        ("ann@example.com", None), ("@spam.example", None),
        ("bob@example.com", "news"), ("cat@example.com", "news"),
    }  # fmt: skip
    ann, bob = everything[("ann@example.com", None)], everything[("bob@example.com", "news")]
    assert ann["reason"] == "manual" and ann["source"] == "cli" and ann["expires_at"] is None
    assert bob["reason"] == "bounced" and bob["expires_at"] is not None and bob["active"] is True
    assert str(everything[("cat@example.com", "news")]["expires_at"]).startswith("2999-01-01")
    # filters
    assert {e["address"] for e in listed(cli, "--list", "news")} == {
        "bob@example.com", "cat@example.com"
    }  # fmt: skip
    assert {e["address"] for e in listed(cli, "--global")} == {"ann@example.com", "@spam.example"}
    assert [e["address"] for e in listed(cli, "--reason", "bounced")] == ["bob@example.com"]
    text = cli("suppress", "list")
    assert "ann@example.com  (global)  manual  cli" in text.stdout
    assert "4 entries" in text.stderr
    # remove: without --list the global entry; with it the list's
    assert cli("suppress", "remove", "ANN@example.com").returncode == 0
    res = cli("suppress", "remove", "bob@example.com")  # it is on news, not global
    assert res.returncode == 1 and "none of those" in res.stderr
    assert cli("suppress", "remove", "bob@example.com", "--list", "news").returncode == 0
    assert {e["address"] for e in listed(cli)} == {"@spam.example", "cat@example.com"}


def test_a_bad_address_refuses_the_whole_command(cli: CLI) -> None:
    res = cli("suppress", "add", "good@example.com", "no-at-sign", "also@", "ok2@example.com")
    assert res.returncode == 2
    assert "'no-at-sign'" in res.stderr and "'also@'" in res.stderr
    assert "good@example.com" not in res.stderr and "nothing was changed" in res.stderr
    assert listed(cli) == []
    for args in (
        ["add", "x@example.com", "--expires", "2001-01-01"],
        ["add", "x@example.com", "--expires", "whenever"],
        ["add", "x@example.com", "--list", "bad list"],
        ["list", "--list", "news", "--global"],
        ["import", "missing.csv"],
    ):
        res = cli("suppress", *args)
        assert res.returncode == 2, (args, res.stderr)
    assert listed(cli) == []


def test_export_then_import_gives_the_same_entries(cli: CLI, tmp_path: Path) -> None:
    cli("suppress", "add", "@example.com", "--reason", "complained")
    cli("suppress", "add", "=cmd@example.org", "--list", "news", "--expires", "90d")
    cli("suppress", "add", "--list", "promo", "--", "-dash@example.org", "+plus@example.org")
    res = cli("suppress", "export", "all.csv")
    assert res.returncode == 0 and "exported 4 entries" in res.stdout
    with (tmp_path / "all.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["address", "list", "reason", "source", "created_at", "expires_at"]
    cells = {r[0] for r in rows[1:]}
    # every cell a spreadsheet would run as a formula is neutralised
    assert cells == {"'@example.com", "'=cmd@example.org", "'-dash@example.org",
                     "'+plus@example.org"}  # fmt: skip
    before = sorted(listed(cli), key=lambda e: (str(e["address"]), str(e["list"])))
    assert cli("suppress", "export", "news.csv", "--list", "news").returncode == 0
    with (tmp_path / "news.csv").open(newline="", encoding="utf-8") as f:
        news = list(csv.reader(f))
    assert [r[0] for r in news[1:]] == ["'=cmd@example.org"]
    # into another queue: the same entries, times and all
    res = cli("suppress", "import", "all.csv", "--queue", "sqlite:///other.db")
    assert res.returncode == 0, res.stderr
    after = sorted(
        listed(cli, "--queue", "sqlite:///other.db"),
        key=lambda e: (str(e["address"]), str(e["list"])),
    )
    assert after == before


def test_import_adds_the_good_rows_and_reports_the_bad(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        "address,list,reason\n"
        "one@example.com,,bounced\n"
        "not-an-address,,\n"
        "two@example.com,news,\n"
        "three@example.com,,annoyed\n"
        "four@example.com,,\n",
        encoding="utf-8",
    )
    res = cli("suppress", "import", "in.csv", "--list", "weekly")
    assert res.returncode == 1
    assert "row 3: address" in res.stderr and "row 5: reason" in res.stderr
    assert "imported 3 entries" in res.stdout and "2 rows rejected" in res.stdout
    # rows without a list went to --list; a row's own list stays
    assert {(e["address"], e["list"], e["reason"], e["source"]) for e in listed(cli)} == {
        ("one@example.com", "weekly", "bounced", "import"),
        ("two@example.com", "news", "manual", "import"),
        ("four@example.com", "weekly", "manual", "import"),
    }
