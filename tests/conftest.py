"""Registers the shared fixtures, which live in tests/support/ with the helpers they go
with: real servers on loopback (aiosmtpd in-process, Postfix smtp-sink, a private Dovecot),
TLS certificates from a throwaway CA, namespaces on Redis, RabbitMQ and PostgreSQL, the CLI
run as a user would, worker processes."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# the helpers' own assertions report their operands as the tests' own do; registered
# before anything imports them
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.browser",
    "tests.support.cli",
    "tests.support.imap",
    "tests.support.processes",
    "tests.support.queues",
    "tests.support.services",
    "tests.support.dns",
    "tests.support.smtp",
]


def pytest_configure(config: pytest.Config) -> None:
    _cache_bytecode_for_child_processes(config)
    config.addinivalue_line(
        "markers",
        "unchecked_mail(reason): the smtpd and smtp_sink fixtures do not check the messages"
        " they receive against the wire invariant (for tests that send odd mail on purpose)",
    )


_PYCACHE = pytest.StashKey[str]()


def _cache_bytecode_for_child_processes(config: pytest.Config) -> None:
    """With ``PYTHONDONTWRITEBYTECODE`` set, every ``mailspool`` the tests start (a few
    hundred) compiles the package from source again, a fifth of its start-up. The children
    keep their bytecode in a cache of this run's own instead (``PYTHONPYCACHEPREFIX``,
    deleted at the end), so nothing is written into the checkout or the virtualenv; what
    runs is the same code."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return  # bytecode is cached already, or cached where the user chose
    config.stash[_PYCACHE] = tempfile.mkdtemp(prefix="mailspool-tests-pycache-")
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = config.stash[_PYCACHE]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PYCACHE in config.stash:
        shutil.rmtree(config.stash[_PYCACHE], ignore_errors=True)
