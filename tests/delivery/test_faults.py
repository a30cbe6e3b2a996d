"""Every failure a relay can produce, through ``mailspool send`` as a user runs it:
Postfix's smtp-sink rejecting (-r soft, -f hard) or hanging up (-q silently, -Q with 421)
at each command, or delaying (-W); a refused connection; a listener that never greets; a
relay that hangs up when the STARTTLS handshake should begin; a tiny asyncio relay for what
smtp-sink cannot script (a 5xx greeting, a 421 to one RCPT among several without
PIPELINING)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailspool.delivery.classify import Action, classify
from mailspool.errors import ReplyError
from mailspool.testing import LineServer, SMTPSink, free_port
from mailspool.transport import Envelope, SMTPTransport, parse_smtp_url
from tests.support.cli import TEMPLATE, Result, json_events, write_csv

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
    return json_events(res.stderr, name)


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
            # a client may hang up mid-session: the run stops at the first TLS failure
            with conn, conn.makefile("rb") as lines, contextlib.suppress(OSError):
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
    # the run stops at the first failure: the sends still setting up their connections
    # are called off, their jobs handed back untried (queued, not deferred)
    assert res.returncode == 75 and status["deferred"] >= 1, res.stderr
    assert status["pending"] == len(ROWS) and status.get("dead", 0) == 0
    # the operator is told it is TLS, not a flaky network
    (told,) = [line for line in res.stderr.splitlines() if "the relay refused us" in line]
    assert "TLS handshake" in told and "(stage starttls)" in told


# -- a tiny asyncio relay: what smtp-sink cannot be made to say ---------------------------------


def plain_reply(line: str) -> str:
    """A relay without ESMTP extensions (so no PIPELINING): one command, one reply."""
    verb = line.partition(" ")[0].upper()
    if verb == "EHLO":
        return "250 tiny"
    if verb == "QUIT":
        return "221 2.0.0 bye <close>"
    return {"DATA": "354 go ahead", ".": "250 2.0.0 queued"}.get(verb, "250 2.1.0 OK")


class TinyRelay:
    """An asyncio SMTP listener on 127.0.0.1, port 0, in a thread of its own. It greets
    with ``greeting`` (anything but a 220 is sent and the connection closed), then answers
    each command line with ``respond(line, conn)``; ``conn`` is a dict of the connection's
    own. A reply ending in " <close>" is sent and the connection closed, as a relay that
    says 421 and hangs up does. Every line received is kept in ``lines`` ("." for the end
    of a message)."""

    def __init__(
        self,
        greeting: str = "220 tiny ESMTP",
        respond: Callable[[str, dict[str, int]], str] | None = None,
    ) -> None:
        self.greeting = greeting
        self.respond = respond or (lambda line, conn: plain_reply(line))
        self.lines: list[str] = []
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tinyrelay")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn: dict[str, int] = {}
        try:
            writer.write(self.greeting.encode() + b"\r\n")
            if not self.greeting.startswith("220"):
                await writer.drain()
                return
            in_data = False
            while line := await reader.readline():
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if in_data and text != ".":
                    continue
                in_data = False
                self.lines.append(text)
                reply = self.respond(text, conn)
                close = reply.endswith(" <close>")
                reply = reply.removesuffix(" <close>")
                writer.write(reply.encode() + b"\r\n")
                await writer.drain()
                if close:
                    return
                in_data = text.upper() == "DATA" and reply.startswith("354")
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()

    def __enter__(self) -> TinyRelay:
        self._thread.start()
        assert self._ready.wait(10), "the tiny relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def attempts(cwd: Path) -> set[int]:
    with sqlite3.connect(cwd / "mailspool.db") as db:
        return {n for (n,) in db.execute("SELECT DISTINCT attempts FROM jobs")}


def test_5xx_greeting_pauses_the_relay_and_dead_letters_nothing(
    job: Path, cli: Callable[..., Result]
) -> None:
    with TinyRelay(greeting="554 5.3.2 not accepting mail") as relay:
        res, status = run(cli, f"smtp://127.0.0.1:{relay.port}", "--log-format", "json")
    assert relay.connections >= 1 and relay.lines == []  # greeted, closed, nothing else
    # stopped with the jobs still queued: exit 75, and told how to continue
    assert res.returncode == 75, res.stderr
    assert "Run the same command again, or `mailspool worker`" in res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["dead"], summary["pending"]) == (0, 0, len(ROWS))
    assert status["total"] == len(ROWS) and status.get("dead", 0) == 0
    assert status.get("deferred", 0) + status.get("queued", 0) == len(ROWS)
    assert summary["deferred"] == status.get("deferred", 0)
    # the pause is reported, as the relay's failure at the greeting
    paused = events(res, "relay paused")
    assert paused, res.stderr
    assert {(e["code"], e["stage"]) for e in paused} == {(554, "greeting")}
    assert "554 5.3.2 not accepting mail" in status["last_error"]
    assert json.loads(cli("dlq", "list", "--json").stdout) == []
    assert attempts(job) == {0}  # the relay's fault: no attempt charged to any job


# -- a 421 to one RCPT among several, without PIPELINING ----------------------------------------

X, Y, Z = "x@example.com", "y@example.com", "z@example.com"
MSG = b"From: a@example.com\r\nTo: x@example.com\r\nSubject: t\r\n\r\nhello\r\n"


def closing_at_second_rcpt(line: str, conn: dict[str, int]) -> str:
    """No PIPELINING; the second RCPT of a transaction gets a 421 and the hang-up."""
    if line.upper().startswith("RCPT"):
        conn["rcpt"] = conn.get("rcpt", 0) + 1
        if conn["rcpt"] == 2:
            return "421 4.3.2 service shutting down <close>"
    return plain_reply(line)


async def send_once(port: int, recipients: tuple[str, ...]) -> ReplyError:
    t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
    try:
        with pytest.raises(ReplyError) as exc:
            await t.send(Envelope("a@example.com", recipients, MSG))
    finally:
        await t.close()
    return exc.value


def test_421_to_the_second_rcpt_without_pipelining_is_raised_as_the_421() -> None:
    with TinyRelay(respond=closing_at_second_rcpt) as relay:
        err = asyncio.run(send_once(relay.port, (X, Y, Z)))
    assert (err.code, err.enhanced, err.stage) == (421, "4.3.2", "rcpt")
    assert classify(err).action is Action.PAUSE
    # nothing was sent after the 421: not the third RCPT, not DATA
    assert [line.split(":")[0] for line in relay.lines] == [
        "EHLO localhost",
        "MAIL FROM",
        "RCPT TO",
        "RCPT TO",
    ]


def test_421_to_the_first_of_two_rcpts_at_smtp_sink_without_pipelining(
    smtp_sink: Callable[..., SMTPSink],
) -> None:
    sink = smtp_sink("-p", "-Q", "rcpt")  # no PIPELINING; 421 and hang-up at RCPT
    err = asyncio.run(send_once(sink.port, (X, Y)))
    assert (err.code, err.stage) == (421, "rcpt")
    assert classify(err).action is Action.PAUSE


@pytest.fixture
def two_recipient_rows(tmp_path: Path) -> Path:
    (tmp_path / "r.csv").write_text(
        "to,cc,subject,body\n"
        + "".join(f"u{i}@example.com,c{i}@example.com,Hello,Two recipients\n" for i in range(3))
    )
    return tmp_path


@pytest.mark.parametrize("relay", ["tiny-421-at-second-rcpt", "smtp-sink-p-Q-rcpt"])
def test_421_to_one_rcpt_without_pipelining_pauses_the_relay(
    two_recipient_rows: Path,
    smtp_sink: Callable[..., SMTPSink],
    cli: Callable[..., Result],
    relay: str,
) -> None:
    def send(port: int) -> Result:
        return cli(
            "send", "r.csv", "--from", "news@example.com", "--json", "--log-format", "json",
            "--max-wait", "0s", "--retry-first", "1h", "--smtp", f"smtp://127.0.0.1:{port}",
        )  # fmt: skip

    if relay.startswith("tiny"):
        with TinyRelay(respond=closing_at_second_rcpt) as tiny:
            res = send(tiny.port)
        assert "DATA" not in tiny.lines  # no message went to the first recipient alone
    else:
        res = send(smtp_sink("-p", "-Q", "rcpt").port)
    assert res.returncode == 75, res.stderr
    paused = events(res, "relay paused")
    assert paused, res.stderr
    assert {(e["code"], e["stage"]) for e in paused} == {(421, "rcpt")}
    status = json.loads(cli("status", "--json").stdout)[0]
    assert status["total"] == 3 and status.get("sent", 0) == 0 and status.get("dead", 0) == 0
    assert status.get("deferred", 0) + status.get("queued", 0) == 3
    assert status["ambiguous"] == 0
    assert attempts(two_recipient_rows) == {0}  # handed back as the relay's fault


def test_421_to_ehlo_is_raised_as_the_421_not_tried_again_as_helo() -> None:
    def respond(line: str, conn: dict[str, int]) -> str:
        if line.upper().startswith(("EHLO", "HELO")):
            return "421 4.3.2 too busy <close>"
        return plain_reply(line)

    with TinyRelay(respond=respond) as relay:
        err = asyncio.run(send_once(relay.port, (X,)))
    assert (err.code, err.stage) == (421, "ehlo")
    assert classify(err).action is Action.PAUSE
    assert relay.lines == ["EHLO localhost"]


@pytest.mark.parametrize("verb", ["STARTTLS", "AUTH"])
def test_421_to_starttls_or_auth_is_the_relay_closing_not_a_misconfiguration(
    verb: str, job: Path, cli: Callable[..., Result]
) -> None:
    """A 421 is temporary wherever it comes: the relay is paused and the jobs wait, the
    run is not stopped as if the TLS or credential settings were wrong."""

    def respond(line: str, conn: dict[str, int]) -> str:
        if line.upper().startswith(verb):
            return "421 4.7.0 try again later <close>"
        if line.upper().startswith("EHLO"):
            return "250-tiny\r\n250-STARTTLS\r\n250 AUTH PLAIN"
        return plain_reply(line)

    url = "smtp://bob:pw@127.0.0.1:{port}?starttls=required"
    with TinyRelay(respond=respond) as relay:
        if verb == "AUTH":  # loopback: credentials without TLS are allowed
            url = "smtp://bob:pw@127.0.0.1:{port}?starttls=off"
        res, status = run(cli, url.format(port=relay.port), "--log-format", "json")
    err = classify(ReplyError("x", code=421, stage=verb.lower()))
    assert err.action is Action.PAUSE
    assert res.returncode == 75, res.stderr
    assert "relay refused us" not in res.stderr  # not stopped as a misconfiguration
    paused = events(res, "relay paused")
    assert {(e["code"], e["error"]) for e in paused} == {(421, "ReplyError")}
    assert status.get("dead", 0) == 0 and attempts(job) == {0}


def test_the_rate_slot_is_taken_once_connected_and_before_the_transaction() -> None:
    """A new connection's set-up happens before the worker's rate-limit slot, so it cannot
    push this message into the next one's slot and bunch them up at the relay."""
    seen: list[list[str]] = []

    async def main(port: int) -> None:
        t = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
        try:
            for _ in range(2):

                async def ready() -> None:
                    seen.append([line.split(":")[0] for line in relay.lines])

                await t.send(Envelope("a@example.com", (X,), MSG), ready)
        finally:
            await t.close()

    with TinyRelay() as relay:
        asyncio.run(main(relay.port))
    # greeted and EHLO answered before the first slot; nothing of a message before either
    assert seen == [["EHLO localhost"], ["EHLO localhost", "MAIL FROM", "RCPT TO", "DATA", "."]]
