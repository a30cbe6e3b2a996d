"""A private Postfix instance for end-to-end tests: its own configuration, queue and data
directories in a temporary directory, an SMTP server on a loopback port of its own, every
domain relayed to a test server but those routed elsewhere by ``transports``; started
with ``postfix -c DIR start``, stopped and removed afterwards.

Postfix must run as root (its daemons drop to the ``postfix`` user): the fixture skips
when not root or Postfix is missing (``bash scripts/services.sh`` installs it), and fails
under CI, where both must be there. Nothing goes to syslog: Postfix logs to ``maillog``
in its directory (``Postfix.log()``), which the tests quote when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mailspool.testing import free_port, postfix_tool, wait_listening
from tests.support.services import need

# chroot off (the "n" in the fifth column): the instance lives in a temporary directory
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    """A running instance: its SMTP ``port`` and its directory ``root``."""

    root: Path
    port: int

    @property
    def config(self) -> Path:
        return self.root / "conf"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"


def _postfix_missing() -> str | None:
    if os.geteuid() != 0:
        return "root (a private Postfix instance starts its daemons as root)"
    if postfix_tool("postfix") is None or postfix_tool("postconf") is None:
        return "Postfix (/usr/sbin/postfix; bash scripts/services.sh installs it)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user (Debian's postfix package creates it)"
    return None


def _settings(root: Path, relay_port: int, transports: Mapping[str, int]) -> list[str]:
    routes = " ".join(f"{d}=smtp:[127.0.0.1]:{p}" for d, p in transports.items())
    return [
        "compatibility_level=3.6",
        "myhostname=mx.mailspool.example",
        "mydomain=mailspool.example",
        "mydestination=",
        "inet_interfaces=loopback-only",
        "inet_protocols=ipv4",
        f"queue_directory={root / 'queue'}",
        f"data_directory={root / 'data'}",
        f"maillog_file={root / 'maillog'}",
        f"maillog_file_prefixes={root}",
        f"relayhost=[127.0.0.1]:{relay_port}",
        f"transport_maps=inline:{{ {routes} }}",
        "mynetworks=127.0.0.0/8",
        "smtpd_relay_restrictions=permit_mynetworks, reject",
        "alias_maps=",
        "alias_database=",
        "local_recipient_maps=",
        "smtp_dns_support_level=disabled",
        "smtp_tls_security_level=none",
        "smtpd_tls_security_level=none",
        # retry soon and give up soon: a test never waits on a queue run
        "queue_run_delay=1s",
        "minimal_backoff_time=1s",
        "maximal_backoff_time=2s",
        "maximal_queue_lifetime=5m",
        "bounce_queue_lifetime=5m",
        "smtp_connect_timeout=5s",
        "smtp_skip_5xx_greeting=no",
    ]


def _stop(pf: Postfix, postfix: str) -> None:
    subprocess.run([postfix, "-c", str(pf.config), "stop"], capture_output=True, check=False)
    pid_file = pf.root / "queue" / "pid" / "master.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().split()[0])
        end = time.monotonic() + 15
        while time.monotonic() < end:  # the master exits once its children have
            os.kill(pid, 0)
            time.sleep(0.05)


@contextlib.contextmanager
def private_postfix(relay_port: int, transports: Mapping[str, int]) -> Iterator[Postfix]:
    """A Postfix instance relaying to 127.0.0.1:``relay_port``, but the domains of
    ``transports`` to 127.0.0.1 on their ports; stopped and removed on leaving. Skips
    (fails under CI) when it cannot run here."""
    missing = _postfix_missing()
    need(missing is None, missing or "")
    postfix, postconf = postfix_tool("postfix"), postfix_tool("postconf")
    assert postfix is not None and postconf is not None
    # not pytest's tmp_path: its parents are private to root, and the daemons run as postfix
    root = Path(tempfile.mkdtemp(prefix="mailspool-postfix-"))
    root.chmod(0o755)
    pf = Postfix(root, free_port())
    try:
        pf.config.mkdir()
        (root / "queue").mkdir()
        (root / "data").mkdir()
        postfix_user = pwd.getpwnam("postfix")
        os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        (pf.config / "main.cf").write_text("")
        (pf.config / "master.cf").write_text(MASTER_CF.format(port=pf.port))
        subprocess.run([postconf, "-c", str(pf.config), "-e",
                        *_settings(root, relay_port, transports)],
                       check=True, capture_output=True)  # fmt: skip
        started = subprocess.run([postfix, "-c", str(pf.config), "start"],
                                 capture_output=True, text=True, check=False)  # fmt: skip
        assert started.returncode == 0, f"postfix start: {started.stderr}\n{pf.log()}"
        assert wait_listening(pf.port), f"Postfix is not listening\n{pf.log()}"
        yield pf
    finally:
        _stop(pf, postfix)
        shutil.rmtree(root, ignore_errors=True)
