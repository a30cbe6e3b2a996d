"""Registers the shared fixtures, which live in tests/support/ with the helpers they go
with: real servers on loopback (aiosmtpd in-process, Postfix smtp-sink, a private Dovecot),
TLS certificates from a throwaway CA, namespaces on Redis, RabbitMQ and PostgreSQL, the CLI
run as a user would, worker processes."""

from __future__ import annotations

import pytest

# the helpers' own assertions report their operands as the tests' own do; registered
# before anything imports them
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.cli",
    "tests.support.imap",
    "tests.support.processes",
    "tests.support.queues",
    "tests.support.services",
    "tests.support.smtp",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "unchecked_mail(reason): the smtpd and smtp_sink fixtures do not check the messages"
        " they receive against the wire invariant (for tests that send odd mail on purpose)",
    )
