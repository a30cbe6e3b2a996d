"""Shared fixtures: real servers on loopback (aiosmtpd in-process, Postfix smtp-sink),
TLS certificates from a throwaway CA, and a helper to run the CLI as a user would."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailspool.testing import RecordingSMTPServer, SMTPSink, Violation, violation_report

# the shared assertions there report their operands as the tests' own do
pytest.register_assert_rewrite("tests.processes")
from .processes import Workers  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parent.parent


def need(available: bool, what: str) -> None:
    """Skip when a service is missing locally; fail under CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI but is not available")
    pytest.skip(f"{what} is not available")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "unchecked_mail(reason): the smtpd and smtp_sink fixtures do not check the messages"
        " they receive against the wire invariant (for tests that send odd mail on purpose)",
    )


def unchecked_reason(request: pytest.FixtureRequest) -> str | None:
    """The reason given by the test's ``unchecked_mail`` marker, if it has one."""
    marker = request.node.get_closest_marker("unchecked_mail")
    if marker is None:
        return None
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    if not reason:
        pytest.fail("unchecked_mail needs a reason", pytrace=False)
    return str(reason)


def fail_on(violations: list[Violation]) -> None:
    if violations:
        pytest.fail(violation_report(violations), pytrace=False)


@pytest.fixture
def smtpd(request: pytest.FixtureRequest) -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server; the test fails at teardown if a message it accepted broke
    the wire invariant (``smtpd.allow_bcc(...)`` before sending declares Bccs)."""
    server = RecordingSMTPServer(unchecked=unchecked_reason(request)).start()
    try:
        yield server
    finally:
        server.stop()
    fail_on(server.violations)


@pytest.fixture
def smtp_sink(request: pytest.FixtureRequest) -> Iterator[Callable[..., SMTPSink]]:
    """Starts smtp-sinks; every one dumps its messages, which are checked against the wire
    invariant at teardown (only those it accepted: not with -f/-r/-q/-Q at ".")."""
    started: list[SMTPSink] = []
    unchecked = unchecked_reason(request)

    def start(*options: str, dump: bool = True, bcc: Iterable[str] = ()) -> SMTPSink:
        del dump  # every sink dumps, so that its messages can be checked
        need(SMTPSink.available(), "Postfix smtp-sink (/usr/sbin/smtp-sink)")
        sink = SMTPSink(*options, dump=True, bcc=bcc, unchecked=unchecked).start()
        started.append(sink)
        return sink

    yield start
    found: list[Violation] = []
    try:
        for sink in started:
            sink.stop()  # the dump is complete once it has stopped
            found += sink.violations()
    finally:
        for sink in started:
            sink.cleanup()
    fail_on(found)


REDIS_URL = os.environ.get("MAILSPOOL_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a key prefix of its own; every key under it is deleted afterwards.
    Skips when Redis is absent locally (fails under CI)."""
    need(redis_available(), f"Redis at {REDIS_URL}")
    import redis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    with redis.Redis.from_url(REDIS_URL) as r:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            r.unlink(*keys[start : start + 1000])


AMQP_URL = os.environ.get("MAILSPOOL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "MAILSPOOL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class RabbitMQNamespace:
    """A queue URL and a store URL with names of their own (queue prefix, schema, or the
    key prefix of a Redis store)."""

    base_amqp: str
    prefix: str
    schema: str
    redis_store: str | None = None  # the job store in Redis instead of PostgreSQL

    def amqp(self, base: str | None = None) -> str:
        return f"{base or self.base_amqp}?prefix={self.prefix}"

    @property
    def store(self) -> str:
        return self.redis_store or f"{POSTGRES_URL}?schema={self.schema}"


def drop_rabbitmq_namespace(ns: RabbitMQNamespace, amqp_base: str | None = None) -> None:
    """Delete the namespace's queues, exchange and schema (on a thread of its own, so that
    it works inside and outside a test's event loop)."""
    import asyncio
    import threading

    async def drop() -> None:
        import aio_pika
        import asyncpg

        try:
            conn = await aio_pika.connect(amqp_base or ns.base_amqp, timeout=10)
        except (aio_pika.exceptions.AMQPError, OSError):
            pass  # a private broker already stopped: nothing of ours is left on it
        else:
            async with conn:
                ch = await conn.channel()
                for queue in (f"{ns.prefix}.work", f"{ns.prefix}.dead"):
                    await ch.queue_delete(queue)
                await ch.exchange_delete(f"{ns.prefix}.dlx")
        if ns.redis_store is not None:
            return  # the redis_url fixture deletes the store's keys
        pg = await asyncpg.connect(POSTGRES_URL)
        try:
            await pg.execute(f"DROP SCHEMA IF EXISTS {ns.schema} CASCADE")
        finally:
            await pg.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(drop())
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]


def rabbitmq_available() -> bool:
    try:
        import aio_pika  # noqa: F401
        import asyncpg  # noqa: F401
    except ImportError:
        return False
    return port_open(5672) and port_open(5432)


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQNamespace]:
    """A RabbitMQ queue prefix and a PostgreSQL schema of this test's own, deleted
    afterwards. Skips when RabbitMQ or PostgreSQL is absent locally (fails under CI)."""
    need(rabbitmq_available(), "RabbitMQ (127.0.0.1:5672), PostgreSQL (127.0.0.1:5432)")
    token = uuid.uuid4().hex[:12]
    ns = RabbitMQNamespace(AMQP_URL, f"mstest-{token}", f"mstest_{token}")
    yield ns
    drop_rabbitmq_namespace(ns)


@pytest.fixture
def rabbitmq_redis(redis_url: str) -> Iterator[RabbitMQNamespace]:
    """A RabbitMQ queue prefix with its job store in Redis under a key prefix of its own,
    both deleted afterwards. Skips when RabbitMQ or Redis is absent locally (fails under
    CI)."""
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        need(False, "aio-pika (mailspool[rabbitmq])")
    need(port_open(5672), "RabbitMQ (127.0.0.1:5672)")
    token = uuid.uuid4().hex[:12]
    ns = RabbitMQNamespace(AMQP_URL, f"mstest-{token}", "", redis_store=redis_url)
    yield ns
    drop_rabbitmq_namespace(ns)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Run ``mailspool ARGS`` in a subprocess, in tmp_path, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
        full_env.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "mailspool", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "Name, Email") -> Path:
    path.write_text(header + "\n" + "".join(f"{n}, {e}\n" for n, e in rows), encoding="utf-8")
    return path


TEMPLATE = """From: News <news@example.com>
To: {{ Email }}
Subject: Hi {{ Name }}, your update

Hi {{ Name }}, this is your update.
"""


@contextlib.contextmanager
def timing_server() -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server whose arrival times measure the senders, not this test
    process: late in a long suite a full garbage collection here pauses the server's
    thread long enough to bunch the arrivals it timestamps, so none runs meanwhile."""
    gc.collect()
    gc.disable()
    try:
        with RecordingSMTPServer() as server:
            yield server
    finally:
        gc.enable()


def json_events(text: str, name: str) -> list[dict[str, Any]]:
    """The JSON log events called ``name`` among the lines of ``text``."""
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            found.append(event)
    return found


@pytest.fixture
def workers() -> Iterator[list[Workers]]:
    """Worker process sets a test starts; killed at its end, whatever happened."""
    started: list[Workers] = []
    yield started
    for w in started:
        w.kill()
