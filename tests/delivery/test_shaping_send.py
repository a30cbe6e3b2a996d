"""Shaping end to end, run as a user runs ``mailspool send``: a server that answers
``421 4.7.0`` to Gmail recipients whenever more than R a second arrive. mailspool must
settle under R within a bounded number of messages, with no dead letter and no attempt
charged, while mail to other providers flows at full speed; ``status`` shows Google's
adapted rate and the reply that cut it. With the SQLite queue (the rates held in the
process), the Redis queue (the rates shared in Redis) and RabbitMQ."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.testing import RecordingSMTPServer
from mailspool.testing.throttle import Throttler
from tests.support.cli import TEMPLATE, Result, write_csv

# real-time rates: run alone, after the parallel part of make test (docs/testing-internals.md)
pytestmark = pytest.mark.serial

#: what the provider takes a second, and the run's recipients
R = 8
GOOGLE, OTHERS = 60, 300

RULES = """
[provider.google]
domains = ["gmail.com"]
throttle = ["421 4.7.0"]
quiet = 600  # no climb during the run: this test is about settling
"""


def recipients(tmp_path: Path) -> None:
    # Gmail first: its mail is claimed first, and must not hold the others up
    emails = [f"g{i}@gmail.com" for i in range(GOOGLE)] + [
        f"o{i}@example.com" for i in range(OTHERS)
    ]
    write_csv(tmp_path / "r.csv", [(e.partition("@")[0], e) for e in emails])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    (tmp_path / "providers.toml").write_text(RULES)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis", "rabbitmq"])
def test_a_throttling_provider_is_slowed_alone_and_nothing_is_charged(
    backend: str, tmp_path: Path, cli: Callable[..., Result], request: pytest.FixtureRequest
) -> None:
    recipients(tmp_path)
    queue: list[str] = []
    if backend == "redis":
        queue = ["--queue", request.getfixturevalue("redis_url")]
    elif backend == "rabbitmq":
        ns = request.getfixturevalue("rabbitmq")
        queue = ["--queue", ns.amqp(), "--store", ns.store]
    throttler = Throttler(["gmail.com"], per_second=R)
    with RecordingSMTPServer(rcpt_hook=throttler) as server:
        res = cli(
            "send", "r.csv", "--template", "t.txt", "--json", *queue,
            "--smtp", f"smtp://127.0.0.1:{server.port}", "--providers", "providers.toml",
            "--concurrency", "8",
        )  # fmt: skip
        st = cli("status", "--json", *queue)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["dead"], summary["deferred"]) == (GOOGLE + OTHERS, 0, 0)
    assert len(server.messages) == GOOGLE + OTHERS
    # it was throttled, and settled: a bounded number of refusals (each cut halves the
    # rate and answers one round of messages in flight), none among the last 20 taken
    assert throttler.refused, "the provider never throttled: the test proves nothing"
    assert len(throttler.refused) <= 60, len(throttler.refused)
    assert throttler.refused_after(throttler.taken[-20]) == 0
    # the other provider's mail was not held back: all of it was taken before Gmail had
    # taken 30 (which the server spreads over at least 30 / R seconds)
    assert len(throttler.others) == OTHERS and max(throttler.others) < throttler.taken[29]
    # no attempt charged for a throttled message: every job was claimed once
    (row,) = json.loads(st.stdout) if st.stdout.startswith("[") else [json.loads(st.stdout)]
    google = {p["name"]: p for p in row["providers"]}["google"]
    assert google["throttled"] >= 1 and google["ceiling"] is None
    assert google["rate"] is not None and google["rate"] < R
    assert google["last_reply"].startswith("421 4.7.0")
    text = cli("status", *queue).stdout
    assert "provider google: rate " in text and "421 4.7.0" in text
    if backend == "sqlite":
        assert attempts(tmp_path) == {1: GOOGLE + OTHERS}


def attempts(tmp_path: Path) -> dict[int, int]:
    import sqlite3

    db = sqlite3.connect(f"file:{tmp_path / 'mailspool.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT attempts, count(*) FROM jobs GROUP BY attempts"))
    finally:
        db.close()


def test_a_bad_rules_file_stops_before_any_work(tmp_path: Path, cli: Callable[..., Result]) -> None:
    recipients(tmp_path)
    (tmp_path / "bad.toml").write_text('[provider.acme]\ndomain = ["acme.test"]\n')
    for args, env in (
        (["--providers", "bad.toml"], {}),
        ([], {"MAILSPOOL_PROVIDERS": "bad.toml"}),
    ):
        res = cli("send", "r.csv", "--template", "t.txt", *args, env=env)
        assert res.returncode == 2
        assert "bad.toml: [provider.acme]: unknown key 'domain'" in res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "mailspool.db").exists()
    res = cli("send", "r.csv", "--template", "t.txt", "--providers", "off", "--json")
    assert res.returncode == 0, res.stderr
    assert "providers" not in json.loads(cli("status", "--json").stdout)[0]
