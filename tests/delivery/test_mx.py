"""MX lookups (delivery/mx.py) against a real DNS server on loopback (dnsmasq): hosts in
preference order, one query per domain while its TTL lasts, none-found remembered, and
a domain's provider found by its MX hosts (``--resolve-mx``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.delivery.mx import MXResolver, parse_nameserver
from mailspool.delivery.providers import load_providers
from mailspool.delivery.shaping import Shaper
from mailspool.errors import ConfigError
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import TEMPLATE, Result, write_csv
from tests.support.dns import DNSServer


async def test_mx_hosts_come_in_preference_order_and_are_cached_per_ttl(
    dns_server: Callable[..., DNSServer],
) -> None:
    dns = dns_server(
        ("customer.test", "alt1.aspmx.l.google.com", 20),
        ("customer.test", "aspmx.l.google.com", 10),
        ttl=3600,
    )
    now = [0.0]
    resolver = MXResolver(parse_nameserver(dns.address), clock=lambda: now[0])
    # many senders asking at once: one query
    answers = await asyncio.gather(*(resolver.hosts("Customer.Test.") for _ in range(20)))
    assert set(answers) == {("aspmx.l.google.com", "alt1.aspmx.l.google.com")}
    assert resolver.lookups == 1 and dns.queries("customer.test") == 1
    now[0] += 3500  # within the TTL: from the cache
    await resolver.hosts("customer.test")
    assert dns.queries("customer.test") == 1
    now[0] += 200  # past it: asked again
    await resolver.hosts("customer.test")
    assert dns.queries("customer.test") == 2
    # a domain without MX records: none, and remembered too
    assert await resolver.hosts("nomx.test") == ()
    assert await resolver.hosts("nomx.test") == ()
    assert resolver.lookups == 3


async def test_a_short_ttl_is_held_for_the_minimum(dns_server: Callable[..., DNSServer]) -> None:
    dns = dns_server(("brief.test", "mx.brief.test", 10), ttl=1)
    now = [0.0]
    resolver = MXResolver(parse_nameserver(dns.address), clock=lambda: now[0])
    await resolver.hosts("brief.test")
    now[0] += 20  # past its TTL of 1 s, within the 30 s kept at least
    await resolver.hosts("brief.test")
    assert dns.queries("brief.test") == 1


async def test_a_domain_whose_mx_is_google_is_shaped_as_google(
    dns_server: Callable[..., DNSServer],
) -> None:
    dns = dns_server(
        ("workspace-customer.test", "aspmx.l.google.com", 1),
        ("m365-customer.test", "m365-customer-test.mail.protection.outlook.com", 0),
        ("own.test", "mx.own.test", 5),
    )
    shaper = Shaper(load_providers(), resolver=MXResolver(parse_nameserver(dns.address)))
    found = {d: (p.name if (p := await shaper.provider(d)) else None) for d in (
        "workspace-customer.test", "m365-customer.test", "own.test", "gmail.com",
    )}  # fmt: skip
    assert found == {
        "workspace-customer.test": "google", "m365-customer.test": "microsoft",
        "own.test": None, "gmail.com": "google",
    }  # fmt: skip
    assert dns.queries("gmail.com") == 0  # named by the rules: no lookup


def test_dns_server_addresses() -> None:
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1"):
        with pytest.raises(ConfigError, match="bad DNS server"):
            parse_nameserver(bad)


def test_send_with_resolve_mx_shapes_a_domain_hosted_by_google(
    tmp_path: Path, dns_server: Callable[..., DNSServer], cli: Callable[..., Result]
) -> None:
    # .test is a special-use name that recipient checks refuse: .example is not
    dns = dns_server(("workspace.example", "aspmx.l.google.com", 1))
    write_csv(tmp_path / "r.csv", [(f"u{i}", f"u{i}@workspace.example") for i in range(6)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    with RecordingSMTPServer() as server:
        res = cli(
            "send", "r.csv", "--template", "t.txt", "--json", "--resolve-mx",
            "--dns-server", dns.address, "--smtp", f"smtp://127.0.0.1:{server.port}",
        )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(server.messages) == 6
    (google,) = json.loads(cli("status", "--json").stdout)[0]["providers"]
    assert (google["name"], google["sent"]) == ("google", 6)
    assert dns.queries("workspace.example") == 1  # once for the six
