"""Settings -> the deliverability objects (wiring.load_deliverability): keys and secrets
loaded at start, a bad key file or a missing secret stopping the command there (exit 2,
naming it), and ``mailspool send`` with DKIM and unsubscribe links configured through the
environment delivering signed messages."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.config import load_settings
from mailspool.errors import ConfigError
from mailspool.message.dkim_keys import generate_key
from mailspool.message.unsubscribe import ENV_SECRET, ENV_SECRET_FILE, Secrets, read_token
from mailspool.queue import MemoryQueue
from mailspool.testing import RecordingSMTPServer
from mailspool.wiring import build_pool, load_deliverability, load_renderer, make_producer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.deliverability import SECRET
from tests.support.dkim import dkimpy_results


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv(ENV_SECRET_FILE, raising=False)


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    return generate_key("example.com", "s1", "ed25519", out_dir=tmp_path / "keys")


def test_nothing_configured_adds_nothing(no_secret: None) -> None:
    d = load_deliverability(load_settings())
    assert (d.signer, d.unsubscribe, d.dkim_required, d.list_name) == (None, None, False, "default")


def test_keys_secrets_and_list_are_loaded(
    key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_SECRET, SECRET)
    settings = load_settings(
        dkim=[f"Example.COM:s1:{key[0]}"],
        dkim_required=True,
        unsubscribe_url="https://mail.example.com/u/",
        list="weekly",
    )
    d = load_deliverability(settings, "spring")
    assert d.signer is not None and d.signer.domains == frozenset({"example.com"})
    assert d.dkim_required and d.list_name == "weekly"
    assert d.unsubscribe is not None and d.unsubscribe.base_url == "https://mail.example.com/u"
    token = d.unsubscribe.token("ann@example.org", "weekly", "spring")
    assert read_token(Secrets([SECRET]), token).address == "ann@example.org"


@pytest.mark.parametrize("content", [None, b"not a key\n", b"-----BEGIN PUBLIC KEY-----\nx\n"])
def test_a_bad_key_file_is_refused_naming_it(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(ConfigError, match=str(path)):
        load_deliverability(load_settings(dkim=[f"example.com:s1:{path}"]))


def test_unsubscribe_needs_a_secret_read_only_when_it_is_on(
    no_secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://mail.example.com/u"
    with pytest.raises(ConfigError, match=ENV_SECRET):
        load_deliverability(load_settings(unsubscribe_url=url))
    monkeypatch.setenv(ENV_SECRET, "short")
    assert load_deliverability(load_settings()).unsubscribe is None  # not read: no error
    with pytest.raises(ConfigError, match="at least 32"):
        load_deliverability(load_settings(unsubscribe_url=url))


def test_dkim_required_without_keys_is_refused() -> None:
    with pytest.raises(ConfigError, match="--dkim-required needs at least one key"):
        load_deliverability(load_settings(dkim_required=True))


def test_a_campaign_too_long_for_a_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SECRET, SECRET)
    settings = load_settings(unsubscribe_url="https://mail.example.com/u")
    with pytest.raises(ConfigError, match="too long for an unsubscribe link"):
        load_deliverability(settings, "c" * 101)


def test_the_producer_and_the_render_processes_get_them(
    tmp_path: Path, key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_SECRET, SECRET)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    settings = load_settings(
        dkim=[f"example.com:s1:{key[0]}"],
        unsubscribe_url="https://mail.example.com/u",
        list="weekly",
        template=tmp_path / "t.txt",
        render_processes=1,
    )
    renderer = load_renderer(settings)
    pool = build_pool(settings, renderer, "c1", tmp_path / "t.txt", delivering=False)
    assert pool is not None
    try:
        producer = asyncio.run(make_producer(MemoryQueue(), renderer, "c1", settings, pool=pool))
    finally:
        pool.close()
    for d in (pool.spec.deliverability, producer.deliverability, producer.builder.deliverability):
        assert d.signer is not None and d.unsubscribe is not None and d.list_name == "weekly"


def test_send_signs_and_links_what_it_delivers(
    tmp_path: Path,
    key: tuple[Path, str],
    smtpd: RecordingSMTPServer,
    cli: Callable[..., Result],
) -> None:
    write_csv(tmp_path / "r.csv", [("Ann", "ann@example.org"), ("Bob", "bob@example.org")])
    (tmp_path / "t.txt").write_text(TEMPLATE + "Unsubscribe: {{ unsubscribe_url }}\n")
    env = {
        "MAILSPOOL_DKIM": f"example.com:s1:{key[0]}",
        "MAILSPOOL_UNSUBSCRIBE_URL": "https://mail.example.com/u",
        ENV_SECRET: SECRET,
    }
    res = cli(
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(smtpd.messages) == 2
    for m in smtpd.messages:
        assert dkimpy_results(m.data, [key[1]]) == ["pass"]
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        url = str(msg["List-Unsubscribe"])[1:-1]
        assert f"Unsubscribe: {url}" in m.data.decode()
        token = read_token(Secrets([SECRET]), url.rpartition("/")[2])
        assert token.address == m.recipients[0]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAILSPOOL_DKIM": "example.com:s1:missing.key"}, "missing.key"),
        ({"MAILSPOOL_UNSUBSCRIBE_URL": "https://mail.example.com/u"}, ENV_SECRET),
    ],
    ids=["key", "secret"],
)
def test_a_command_stops_at_start_with_exit_2(
    tmp_path: Path, cli: Callable[..., Result], env: dict[str, str], named: str
) -> None:
    write_csv(tmp_path / "r.csv", [("Ann", "ann@example.org")])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    res = cli("enqueue", "r.csv", "--template", "t.txt", env=env)
    assert res.returncode == 2, res.stderr
    assert named in res.stderr
