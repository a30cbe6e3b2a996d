"""A real DNS server on loopback for MX lookups: dnsmasq (Debian's dnsmasq-base, which
``make test`` installs), started per test on a free UDP and TCP port with the MX records
the test gives, answering nothing else (no upstream, no /etc/hosts)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import need


@dataclass
class DNSServer:
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def queries(self, name: str) -> int:
        """How many queries for ``name`` the server logged."""
        return sum(f"query[MX] {name} " in line for line in self.log.read_text().splitlines())


def _free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for the DNS server")


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[Callable[..., DNSServer]]:
    """``start(("domain", "host", preference), ..., ttl=60)``: a DNS server with these MX
    records (each answered with ``ttl``)."""
    path = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin")
    need(path is not None, "dnsmasq (Debian package dnsmasq-base)")
    assert path is not None
    started: list[subprocess.Popen[bytes]] = []

    def start(*records: tuple[str, str, int], ttl: int = 60) -> DNSServer:
        port = _free_udp_and_tcp_port()
        log = tmp_path / f"dnsmasq-{port}.log"
        args = [
            path, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
            "--pid-file=", f"--local-ttl={ttl}", "--log-queries", f"--log-facility={log}",
            *(f"--mx-host={d},{h},{pref}" for d, h, pref in records),
        ]  # fmt: skip
        errors = tmp_path / f"dnsmasq-{port}.err"
        with errors.open("wb") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        started.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dnsmasq did not start: {errors.read_text()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return DNSServer(port, log)
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer within 10 s")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
