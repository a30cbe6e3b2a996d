"""SMTP servers on loopback for the tests: aiosmtpd in-process (``smtpd``), Postfix's
smtp-sink (``smtp_sink``), a server for timing arrivals, and TLS certificates from a
throwaway CA.

The ``smtpd`` and ``smtp_sink`` fixtures check every message they accept against the wire
invariant (mailspool.testing) and fail the test at teardown if one broke it; a test that
sends odd mail on purpose says so with ``@pytest.mark.unchecked_mail(reason)``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailspool.testing import RecordingSMTPServer, SMTPSink, Violation, violation_report
from tests.support.services import need

# -- TLS ---------------------------------------------------------------------------------------


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


# -- servers that check what they receive ----------------------------------------------------


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
        need(
            SMTPSink.available(),
            "Postfix smtp-sink (on PATH, in /usr/sbin or at $MAILSPOOL_SMTP_SINK)",
        )
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


def wait_for_a_final_dot(sink: SMTPSink, sender: subprocess.Popen[Any] | None = None) -> None:
    """Wait until the sink has been sent a message's final dot (it appends the message to
    its dump then, before it answers): a send is in flight. Fails if ``sender`` exits
    first, or after a minute (a bound against hanging, not a timing assertion)."""
    assert sink.dump is not None, "the sink keeps no dump"
    deadline = time.monotonic() + 60
    while not (os.path.exists(sink.dump) and os.path.getsize(sink.dump) > 0):
        assert sender is None or sender.poll() is None, "the sender exited before sending"
        assert time.monotonic() < deadline, "no message reached the sink within a minute"
        time.sleep(0.05)


# -- timing ------------------------------------------------------------------------------------


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
