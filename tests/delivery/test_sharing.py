"""How a command's limits are shared among its delivery processes (delivery/sharing.py),
and how many processes ``--processes`` (or its default) gives (cli/processes.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailspool.cli.processes import delivery_processes
from mailspool.config import load_settings
from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.providers import Provider, Providers
from mailspool.delivery.relays import RelaySpec
from mailspool.delivery.sharing import (
    PROCESS_RATE,
    automatic,
    most_processes,
    share_limits,
    share_providers,
    share_relay,
)
from mailspool.errors import ConfigError


def test_rates_are_divided_and_concurrency_floor_divided() -> None:
    limits = LimitSettings(
        rate=90.0,
        domain_rates={"gmail.com": 30.0},
        default_domain_rate=9.0,
        domain_concurrency=7,
    )
    shared = share_limits(limits, 3)
    assert shared == LimitSettings(
        rate=30.0, domain_rates={"gmail.com": 10.0}, default_domain_rate=3.0, domain_concurrency=2
    )
    # N processes together: the whole rate, never more concurrency than given
    assert shared.rate is not None and 3 * shared.rate == limits.rate
    assert 3 * shared.domain_concurrency <= limits.domain_concurrency
    assert share_limits(limits, 1) is limits
    assert share_limits(LimitSettings(), 4) == LimitSettings()  # no limit stays none


def test_providers_share_their_connections_not_their_rates() -> None:
    rules = Providers([Provider("google", ("gmail.com",), rate=20.0, connections=20, floor=1.0)])
    [google] = share_providers(rules, 4).providers
    # the adapted rate is one for the command (the parent's or Redis's): left whole
    assert (google.connections, google.rate, google.floor) == (5, 20.0, 1.0)
    assert share_providers(rules, 4).for_domain("gmail.com") == google
    [unlimited] = share_providers(Providers([Provider("x", connections=0)]), 4).providers
    assert unlimited.connections == 0


def test_a_relay_shares_its_own_rate_and_concurrency() -> None:
    relay = RelaySpec("r1", "smtp://relay:587", rate=50.0, concurrency=9)
    assert share_relay(relay, 2) == RelaySpec("r1", "smtp://relay:587", rate=25.0, concurrency=4)
    plain = RelaySpec("r2", "smtp://relay:587")
    assert share_relay(plain, 2) is plain


def test_each_process_keeps_a_slot_of_every_concurrency_it_shares() -> None:
    relays = [RelaySpec("a", "smtp://a", concurrency=6), RelaySpec("b", "smtp://b")]
    rules = Providers([Provider("yahoo", connections=8), Provider("free", connections=0)])
    limits = LimitSettings(domain_concurrency=3)
    assert most_processes(limits, rules, relays) == 3
    assert most_processes(None, rules, relays) == 6  # the limits are in Redis
    assert most_processes(None, None, []) is None
    n = most_processes(limits, rules, relays)
    assert n is not None and share_limits(limits, n).domain_concurrency >= 1


def test_the_default_is_a_process_per_cpu_and_fewer_for_a_low_rate() -> None:
    assert automatic(8, None) == 8
    assert automatic(8, 300.0) == 1  # a few hundred a second: one process is plenty
    assert automatic(8, PROCESS_RATE) == 1
    assert automatic(8, 2.5 * PROCESS_RATE) == 3
    assert automatic(8, 100 * PROCESS_RATE) == 8
    assert automatic(1, None) == 1


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("MAILSPOOL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_processes_given_and_bounded(clean: None) -> None:
    assert delivery_processes(load_settings(processes=1)) == 1
    assert delivery_processes(load_settings(processes=3, providers="off")) == 3
    # the shipped rules give the smaller providers 5 connections: 5 processes share them
    assert delivery_processes(load_settings(processes=12)) == 5
    bounded = load_settings(processes=4, domain_concurrency=2, providers="off")
    assert delivery_processes(bounded) == 2
    # held in Redis, --domain-concurrency is one set of slots for every process
    shared = bounded.model_copy(update={"limits_redis": "redis://127.0.0.1:6379/0"})
    assert delivery_processes(shared) == 4
    assert delivery_processes(load_settings(rate="100/s", providers="off")) == 1


def test_a_memory_queue_has_one_process(clean: None) -> None:
    assert delivery_processes(load_settings(queue="memory://")) == 1
    with pytest.raises(ConfigError, match="memory://"):
        delivery_processes(load_settings(queue="memory://", processes=2))


def test_by_default_one_process(clean: None) -> None:
    assert delivery_processes(load_settings(providers="off")) == 1
    redis = load_settings(queue="redis://127.0.0.1:6379/0", providers="off")
    assert delivery_processes(redis) == 1
