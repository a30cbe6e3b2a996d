"""Every failure a relay can produce, through ``mailspool send`` as a user runs it:
Postfix's smtp-sink rejecting (-r soft, -f hard) or hanging up (-q silently, -Q with 421)
at each command, or delaying (-W); a refused connection; a listener that never greets; a
relay that hangs up when the STARTTLS handshake should begin."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailspool.testing import LineServer, SMTPSink, free_port

from .conftest import TEMPLATE, Result, write_csv

ROWS = [(f"u{i}", f"u{i}@example.com") for i in range(5)]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_csv(tmp_path / "r.csv", ROWS)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return tmp_path


def run(
    cli: Callable[..., Result], url: str, *extra: str, retry: str = "1h"
) -> tuple[Result, dict[str, int]]:
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", url, "--json",
        "--max-wait", "0s", "--retry-first", retry, *extra,
    )  # fmt: skip
    status = json.loads(cli("status", "--json").stdout)[0]
    return res, status


@pytest.mark.parametrize(
    ("options", "state", "reason"),
    [
        (("-r", "mail"), "deferred", None),
        (("-f", "mail"), "dead", "rejected_permanent"),
        (("-r", "rcpt"), "deferred", None),
        (("-f", "rcpt"), "dead", "rejected_permanent"),
        (("-r", "data"), "deferred", None),
        (("-f", "data"), "dead", "rejected_permanent"),
        (("-r", "."), "deferred", None),
        (("-f", "."), "dead", "rejected_permanent"),
        (("-Q", "mail"), "deferred", None),  # 421 and hang-up: pauses the relay
        (("-Q", "rcpt"), "deferred", None),
        (("-q", "data"), "deferred", None),  # silent hang-up before the message
        (("-f", "helo,ehlo"), "deferred", None),  # refused at the session level: pause
    ],
)
def test_reply_faults(
    job: Path,
    smtp_sink: Callable[..., SMTPSink],
    cli: Callable[..., Result],
    options: tuple[str, str],
    state: str,
    reason: str | None,
) -> None:
    sink = smtp_sink(*options)
    res, status = run(cli, f"smtp://127.0.0.1:{sink.port}")
    assert status.get(state) == len(ROWS), (status, res.stderr)
    assert status["total"] == len(ROWS)  # nothing lost
    assert res.returncode == (75 if state == "deferred" else 1)
    if reason:
        dead = json.loads(cli("dlq", "list", "--json").stdout)
        assert {d["reason"] for d in dead} == {reason}
        assert all(d["last_reply"].startswith("5") for d in dead)
    assert status["ambiguous"] == 0


def test_hang_up_after_the_final_dot_is_ambiguous_and_retried(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    sink = smtp_sink("-q", ".")
    res, status = run(cli, f"smtp://127.0.0.1:{sink.port}")
    assert status["deferred"] == len(ROWS)
    assert status["ambiguous"] == len(ROWS)
    assert json.loads(res.stdout.strip().splitlines()[-1])["ambiguous"] == len(ROWS)


def test_slow_final_reply_times_out_ambiguously(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    sink = smtp_sink("-W", ".:3")
    _, status = run(cli, f"smtp://127.0.0.1:{sink.port}", "--data-timeout", "0.5s")
    assert status["deferred"] == len(ROWS) and status["ambiguous"] == len(ROWS)


def test_slow_command_reply_times_out(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    sink = smtp_sink("-W", "mail:3")
    _, status = run(cli, f"smtp://127.0.0.1:{sink.port}", "--command-timeout", "0.5s")
    assert status["deferred"] == len(ROWS) and status["ambiguous"] == 0


def test_refused_connection(job: Path, cli: Callable[..., Result]) -> None:
    res, status = run(cli, f"smtp://127.0.0.1:{free_port()}")
    assert res.returncode == 75 and status["deferred"] == len(ROWS)


def test_listener_that_never_greets(job: Path, cli: Callable[..., Result]) -> None:
    with LineServer(greeting=None) as srv:
        res, status = run(cli, f"smtp://127.0.0.1:{srv.port}", "--connect-timeout", "0.5s")
    assert res.returncode == 75 and status["deferred"] == len(ROWS)


def test_deferred_job_keeps_message_id_when_retried(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    flaky = smtp_sink("-q", ".", dump=True)  # delivered but never confirmed
    run(cli, f"smtp://127.0.0.1:{flaky.port}", retry="0.1s")
    good = smtp_sink(dump=True)
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{good.port}",
        "--json", "--retry-first", "0.1s",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    first = {rcpts[0]: mid for rcpts, mid in flaky.received()}
    second = {rcpts[0]: mid for rcpts, mid in good.received()}
    assert len(second) == len(ROWS)
    assert first == second  # the same Message-ID on the retry of an ambiguous delivery
    shown = json.loads(cli("status", "--json").stdout)[0]
    assert shown["sent"] == len(ROWS) and shown["ambiguous"] == len(ROWS)


def events(res: Result, name: str) -> list[dict[str, Any]]:
    """The JSON log events called ``name`` on the run's stderr."""
    found = []
    for line in res.stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            found.append(event)
    return found


@pytest.mark.parametrize("command", ["mail", "rcpt"])
def test_421_then_hang_up_mid_pipeline_pauses_the_relay(
    job: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result], command: str
) -> None:
    sink = smtp_sink("-Q", command)  # smtp-sink pipelines: the 421 comes mid-batch
    res, status = run(cli, f"smtp://127.0.0.1:{sink.port}", "--log-format", "json")
    assert status["deferred"] == len(ROWS) and status["ambiguous"] == 0
    paused = events(res, "relay paused")
    assert paused, res.stderr
    assert {(e["code"], e["stage"]) for e in paused} == {(421, command)}


class StartTLSHangUp:
    """Offers STARTTLS, answers 220 (with ``extra`` in the same write) and closes the
    socket, so the client's TLS handshake meets EOF."""

    def __init__(self, extra: bytes = b"") -> None:
        self.extra = extra
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # to notice the stop flag
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 raw ESMTP\r\n")
                for line in lines:
                    if line.upper().startswith(b"EHLO"):
                        conn.sendall(b"250-raw\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
                    elif line.strip().upper() == b"STARTTLS":
                        conn.sendall(b"220 ready\r\n" + self.extra)
                        break
                    else:
                        conn.sendall(b"250 OK\r\n")

    def __enter__(self) -> StartTLSHangUp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


@pytest.fixture(params=[b"", b"not an SMTP reply\r\n"], ids=["eof", "eof-after-garbage"])
def starttls_hang_up(request: pytest.FixtureRequest) -> Iterator[StartTLSHangUp]:
    with StartTLSHangUp(request.param) as srv:
        yield srv


def test_hang_up_at_the_starttls_handshake_stops_the_run_as_a_tls_failure(
    job: Path, starttls_hang_up: StartTLSHangUp, cli: Callable[..., Result]
) -> None:
    url = f"smtp://127.0.0.1:{starttls_hang_up.port}?starttls=required&verify=off"
    res, status = run(cli, url, "--connect-timeout", "5s")
    assert res.returncode == 75 and status["deferred"] == len(ROWS), res.stderr
    # the operator is told it is TLS, not a flaky network
    (told,) = [line for line in res.stderr.splitlines() if "the relay refused us" in line]
    assert "TLS handshake" in told and "(stage starttls)" in told
