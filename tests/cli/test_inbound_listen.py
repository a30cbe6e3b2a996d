"""``mailspool inbound`` (the SMTP listener) as a user runs it: messages sent with the
real CLI and a VERP return path, the listener started as a process, a bounce delivered
to the envelope sender of one of them, then SIGTERM: it exits 0, having logged the
message and suppressed its recipient."""

from __future__ import annotations

import argparse
import signal
import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.cli.parser import build_parser, take_settings
from mailspool.config import Settings, load_settings
from mailspool.errors import ConfigError
from mailspool.inbound import DEFAULT_MAX_BYTES
from mailspool.message.verp import ENV_SECRET
from mailspool.testing import RecordingSMTPServer, free_port, wait_listening
from tests.support.cli import TEMPLATE, Result, json_events, write_csv
from tests.support.processes import env, mailspool
from tests.support.returned import dsn

SECRET = "listener-return-path-secret-" + "s" * 30
BASE = "bounces@bounce.example.com"


def test_the_listener_takes_a_bounce_and_stops_on_sigterm(
    tmp_path: Path, smtpd: RecordingSMTPServer, cli: Callable[..., Result]
) -> None:
    queue = f"sqlite:///{tmp_path / 'queue.db'}"
    write_csv(tmp_path / "r.csv", [("ann", "ann@example.com"), ("bob", "bob@example.com")])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    sent = cli("send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
               "--queue", queue, "--return-path", BASE, env={ENV_SECRET: SECRET})  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    ann = next(m for m in smtpd.messages if m.recipients == ["ann@example.com"])

    port = free_port()
    log = tmp_path / "listener.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            mailspool("inbound", "--queue", queue, "--return-path", BASE, "--log-format", "json"),
            # where it listens is a setting as any other: from the environment here
            cwd=tmp_path,
            env={**env(), ENV_SECRET: SECRET, "MAILSPOOL_LISTEN": f"127.0.0.1:{port}"},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_listening(port), log.read_text()
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.sendmail("", [ann.sender], dsn("ann@example.com", str(ann.message["Message-ID"])))
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("", ["postmaster@example.com"], b"Subject: relay?\r\n\r\nno\r\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    text = log.read_text()
    [event] = json_events(text, "returned mail")
    assert event["envelope_to"] == ann.sender and event["action"] == "suppressed"
    assert event["statuses"] == ["5.1.1"] and event["kind"] == "dsn"
    assert json_events(text, "stopped")
    assert SECRET not in text
    listed = cli("suppress", "list", "--json", "--queue", queue)
    assert '"ann@example.com"' in listed.stdout and "bob@example.com" not in listed.stdout


def settings_of(*argv: str) -> tuple[argparse.Namespace, Settings]:
    """What main() makes of a command line: the parsed arguments and the settings."""
    args = build_parser().parse_args(argv)
    return args, load_settings(**take_settings(args))


def test_inbound_alone_listens_and_inbound_ingest_still_reads_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no mailspool.toml
    args, settings = settings_of("inbound", "--listen", "[::1]:25", "--max-size", "512K")
    assert (args.module, args.action, settings.listen_address) == ("inbound_listen", None,
                                                                   ("::1", 25))  # fmt: skip
    assert settings.max_size == 512 * 1024
    _, settings = settings_of("inbound")
    assert settings.listen_address == ("127.0.0.1", 2525)  # loopback
    assert settings.max_size == DEFAULT_MAX_BYTES
    args, settings = settings_of("inbound", "ingest", "a.mbox", "--json")
    assert (args.module, args.action, args.paths) == ("inbound", "ingest", ["a.mbox"])
    assert settings.json_output is True
    for bad in (["--listen", "2525"], ["--listen", "host:99999"], ["--max-size", "10G"]):
        with pytest.raises(ConfigError, match=bad[0].lstrip("-").replace("-", "_")):
            settings_of("inbound", *bad)
