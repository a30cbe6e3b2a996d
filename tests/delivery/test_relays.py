"""Several relays (delivery/relays.py): the choice by priority, weight and sender domain,
half-open probing, and, against real servers run as a user runs mailspool (relays in
mailspool.toml): a relay stopped in the middle of a run, weights 3:1 over 4,000
messages, routing by From domain, and a 535 from one relay only."""

from __future__ import annotations

import json
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.delivery.relay_gate import RelayGate
from mailspool.delivery.relays import Relay, RelaySet, RelaySpec
from mailspool.errors import AuthFailure, ConnectError, Stage
from mailspool.testing import RecordingSMTPServer, SMTPSink
from mailspool.transport.outbox import OutboxTransport
from tests.support.cli import TEMPLATE, Result, write_csv


def relay_set(*specs: RelaySpec, tmp: Path) -> RelaySet:
    return RelaySet([Relay(s, OutboxTransport(tmp / s.name)) for s in specs])


def test_weights_share_exactly_and_interleave(tmp_path: Path) -> None:
    rs = relay_set(RelaySpec("a", "x", weight=3), RelaySpec("b", "x", weight=1), tmp=tmp_path)
    picks = [rs.pick(rs.relays, set()) for _ in range(4000)]
    names = [p.name for p in picks if p is not None]
    assert names.count("a") == 3000 and names.count("b") == 1000
    assert max(len(run) for run in "".join(names).split("b")) == 3  # never four a in a row


def test_priority_then_routing_then_pauses(tmp_path: Path) -> None:
    main, spare = RelaySpec("main", "x"), RelaySpec("spare", "x", priority=1)
    corp = RelaySpec("corp", "x", from_domains=("corp.example",))
    now = [0.0]
    rs = RelaySet(
        [
            Relay(s, OutboxTransport(tmp_path), RelayGate(clock=lambda: now[0]))
            for s in (main, spare, corp)
        ]
    )
    general = rs.candidates("news@example.com")
    assert {r.name for r in general} == {"main", "spare"}
    assert [r.name for r in rs.candidates("ceo@CORP.example")] == ["corp"]
    assert rs.pick(general, set()).name == "main"  # type: ignore[union-attr]
    first = rs.relays[0]
    first.pause(ConnectError("refused", stage=Stage.CONNECT))
    assert rs.pick(general, set()).name == "spare"  # type: ignore[union-attr]
    assert first.state().state == "paused" and first.state().reason == "refused"
    # the pause runs out: one probe at a time until a message goes through
    now[0] += 6.0  # the first pause (5 s) runs out
    assert first.usable() and first.state().state == "probing"
    first.probe_in_flight = True
    assert not first.usable()
    assert rs.pick(general, {"spare"}) is None


async def test_a_paused_relay_is_skipped_within_the_same_attempt(tmp_path: Path) -> None:
    from mailspool.transport import Envelope

    class Refusing(OutboxTransport):
        async def send(self, envelope, ready=None):  # type: ignore[no-untyped-def]
            raise AuthFailure("535 5.7.8 no", code=535, stage=Stage.AUTH)

    bad = Relay(RelaySpec("bad", "x", weight=5), Refusing(tmp_path / "bad"))
    good = Relay(RelaySpec("good", "x"), OutboxTransport(tmp_path / "good"))
    rs = RelaySet([bad, good])
    readied = []

    async def ready() -> None:
        readied.append(1)

    msg = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\n\r\nhi\r\n"
    for i in range(3):
        await rs.send(Envelope("a@example.com", ("b@example.com",), msg, f"j{i}"), ready)
    assert (bad.failed, good.sent) == (1, 3) and bad.state().state == "paused"
    assert len(readied) == 3  # one rate-limit slot per message, however many relays
    good.pause(ConnectError("refused", stage=Stage.CONNECT))
    with pytest.raises(ConnectError):  # every relay paused: the worker defers the job
        await rs.send(Envelope("a@example.com", ("b@example.com",), msg, "j9"))


def test_the_metrics_show_each_relays_state_and_messages(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from mailspool.observe.metrics import Metrics

    rs = relay_set(RelaySpec("main", "x"), RelaySpec("spare", "x"), tmp=tmp_path)
    rs.relays[0].pause(ConnectError("refused", stage=Stage.CONNECT))
    rs.relays[1].sent = 7
    metrics = Metrics()
    metrics.watch_transport(rs)
    text = generate_latest(metrics.registry).decode()
    assert 'mailspool_relay_state{relay="main",state="paused"} 1.0' in text
    assert 'mailspool_relay_state{relay="spare",state="up"} 1.0' in text
    assert 'mailspool_relay_messages_total{outcome="sent",relay="spare"} 7.0' in text


# -- end to end ---------------------------------------------------------------------


def toml_relays(tmp_path: Path, *tables: dict[str, object]) -> None:
    lines = []
    for t in tables:
        lines.append("[[relay]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in t.items()]
    (tmp_path / "mailspool.toml").write_text("\n".join(lines) + "\n")


def rows(tmp_path: Path, n: int) -> list[str]:
    emails = [f"u{i}@example.com" for i in range(n)]
    write_csv(tmp_path / "r.csv", [(f"u{i}", e) for i, e in enumerate(emails)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return emails


def summary(res: Result) -> dict[str, int]:
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def attempts(tmp_path: Path) -> dict[int, int]:
    db = sqlite3.connect(f"file:{tmp_path / 'mailspool.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT attempts, count(*) FROM jobs GROUP BY attempts"))
    finally:
        db.close()


def test_a_relay_stopped_mid_run_loses_nothing_and_charges_nothing(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    emails = rows(tmp_path, 200)
    a, b = smtp_sink(), smtp_sink()
    toml_relays(
        tmp_path,
        {"name": "a", "url": f"smtp://127.0.0.1:{a.port}"},
        {"name": "b", "url": f"smtp://127.0.0.1:{b.port}"},
    )

    def stop_a_after_some() -> None:
        deadline = time.monotonic() + 30
        while len(a.dumped()) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        a.stop()

    stopper = threading.Thread(target=stop_a_after_some)
    stopper.start()
    res = cli("send", "r.csv", "--template", "t.txt", "--rate", "200/s", "--json")
    stopper.join()
    assert res.returncode == 0, res.stderr
    s = summary(res)
    assert (s["sent"], s["dead"], s["pending"]) == (200, 0, 0)
    got = [r for m in a.dumped() + b.dumped() for r in m.recipients]
    assert set(got) == set(emails) and len(a.dumped()) >= 20 and len(b.dumped()) > 100
    charged = sum(n for tries, n in attempts(tmp_path).items() if tries > 1)
    assert charged <= s["ambiguous"]  # only a message caught at its final dot


def test_weights_three_to_one_split_4000_messages(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink], cli: Callable[..., Result]
) -> None:
    rows(tmp_path, 4000)
    a, b = smtp_sink(), smtp_sink()
    toml_relays(
        tmp_path,
        {"name": "big", "url": f"smtp://127.0.0.1:{a.port}", "weight": 3},
        {"name": "small", "url": f"smtp://127.0.0.1:{b.port}", "weight": 1},
    )
    res = cli("send", "r.csv", "--template", "t.txt", "--json", "--concurrency", "16")
    assert res.returncode == 0, res.stderr
    assert summary(res)["sent"] == 4000
    big, small = len(a.dumped()), len(b.dumped())
    assert big + small == 4000
    assert abs(big / 4000 - 0.75) <= 0.05 * 0.75, (big, small)


def test_mail_from_a_routed_domain_goes_only_through_its_relay(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@example.com, {'corp' if i % 2 else 'news'}")
                                   for i in range(10)], "Name, Email, Dept")  # fmt: skip
    (tmp_path / "t.txt").write_text(
        "From: {{ Dept }}@{{ Dept }}.example\nTo: {{ Email }}\nSubject: s\n\nHi.\n"
    )
    with RecordingSMTPServer() as corp, RecordingSMTPServer() as bulk:
        toml_relays(
            tmp_path,
            {"name": "corp", "url": f"smtp://127.0.0.1:{corp.port}",
             "from_domains": ["corp.example"]},
            {"name": "bulk", "url": f"smtp://127.0.0.1:{bulk.port}"},
        )  # fmt: skip
        res = cli("send", "r.csv", "--template", "t.txt", "--json")
    assert res.returncode == 0, res.stderr
    assert {m.sender for m in corp.messages} == {"corp@corp.example"} and len(corp.messages) == 5
    assert {m.sender for m in bulk.messages} == {"news@news.example"} and len(bulk.messages) == 5


def test_a_535_from_one_relay_sends_everything_through_the_other(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_file: Path, cli: Callable[..., Result]
) -> None:
    emails = rows(tmp_path, 20)
    creds = ("bob", "s3cret")
    with (
        RecordingSMTPServer(tls=server_tls, credentials=creds) as one,
        RecordingSMTPServer(tls=server_tls, credentials=creds) as two,
    ):
        toml_relays(
            tmp_path,
            {"name": "one", "url": f"smtp://bob@127.0.0.1:{one.port}?cafile={ca_file}",
             "weight": 5},
            {"name": "two", "url": f"smtp://bob@127.0.0.1:{two.port}?cafile={ca_file}"},
        )  # fmt: skip
        res = cli(
            "send", "r.csv", "--template", "t.txt", "--json",
            env={"MAILSPOOL_SMTP_PASSWORD_ONE": "wrong", "MAILSPOOL_SMTP_PASSWORD": "s3cret"},
        )  # fmt: skip
    assert res.returncode == 0, res.stderr
    s = summary(res)
    assert (s["sent"], s["dead"], s["pending"]) == (20, 0, 0)
    assert one.messages == [] and sorted(r for m in two.messages for r in m.recipients) == sorted(
        emails
    )
    assert ("bob", "wrong") in one.auth_attempts and "s3cret" not in res.stderr + res.stdout
    assert attempts(tmp_path) == {1: 20}
    # status shows each relay as the worker last published it
    st = json.loads(cli("status", "--json").stdout)[0]
    by_name = {r["name"]: r for r in st["relays"]}
    assert by_name["one"]["state"] == "paused" and "535" in by_name["one"]["reason"]
    assert (by_name["one"]["sent"], by_name["two"]["sent"], by_name["two"]["state"]) == (
        0,
        20,
        "up",
    )
    text = cli("status").stdout
    assert "relay one: paused (535" in text and "relay two: up  sent=20" in text


def test_relays_from_flags_and_tables_and_their_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailspool.config import load_settings
    from mailspool.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    s = load_settings(smtp=["smtp://a.example", "smtp://b.example"])
    assert [(r.name, r.url) for r in s.relays] == [
        ("relay1", "smtp://a.example"), ("relay2", "smtp://b.example")
    ]  # fmt: skip
    toml_relays(tmp_path, {"name": "x", "url": "smtp://x.example", "rate": "5/s",
                           "from_domains": ["@Corp.Example"]})  # fmt: skip
    (x,) = load_settings().relays
    assert (x.rate, x.from_domains) == (5.0, ("corp.example",))
    for table, error in (
        ({"name": "bad name", "url": "smtp://x"}, "relay.0.name"),
        ({"name": "x", "url": "smtp://x", "rate": "fast"}, "rate"),
        ({"name": "x", "url": "smtp://x", "weight": 0}, "weight"),
        ({"name": "x", "url": "smtp://x", "colour": "red"}, "colour"),
    ):
        toml_relays(tmp_path, table)
        with pytest.raises(ConfigError, match=error):
            load_settings()
    toml_relays(tmp_path, {"name": "relay1", "url": "smtp://x"})
    with pytest.raises(ConfigError, match="takes a name --smtp gives"):
        _ = load_settings(smtp=["smtp://a.example"]).relays
