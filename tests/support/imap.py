"""A private Dovecot IMAP server on loopback (the ``dovecot`` fixture): its own config
file in a directory of its own (no system config), one user with a plain password in a
passwd-file, Maildirs under that directory, and TLS with a certificate from the tests'
CA, so that both ``imaps://`` and ``imap://`` with STARTTLS work. Stopped afterwards.

It runs as root (Dovecot drops to its own users, the mail to ``nobody``): a missing
Dovecot, or a non-root run, skips the test locally and fails it under CI.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from mailspool.testing import free_port, wait_listening
from tests.support.services import need

USER, PASSWORD = "test", "imap-test-password"


def dovecot_path() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)),
        None,
    )


@dataclass
class Dovecot:
    """A running Dovecot: its ports (``imaps``: implicit TLS; ``imap``: STARTTLS), the
    CA file that verifies its certificate, the test user and its Maildir."""

    imaps_port: int
    imap_port: int
    ca_file: Path
    maildir: Path
    user: str = USER
    password: str = PASSWORD

    def url(self, mailbox: str = "INBOX", *, scheme: str = "imaps") -> str:
        port = self.imaps_port if scheme == "imaps" else self.imap_port
        return f"{scheme}://{self.user}@127.0.0.1:{port}/{mailbox}?cafile={self.ca_file}"

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in session of the test user (the tests' own client)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, *messages: bytes, mailbox: str = "INBOX") -> None:
        imap = self.connect()
        try:
            for data in messages:
                typ, answer = imap.append(mailbox, None, None, data)
                assert typ == "OK", answer
        finally:
            imap.logout()

    def count(self, mailbox: str) -> int | None:
        """How many messages ``mailbox`` holds (None: it does not exist), read from its
        Maildir: no login (after a refused one, Dovecot slows the next ones down)."""
        folder = self.maildir if mailbox == "INBOX" else self.maildir / f".{mailbox}"
        if not folder.is_dir():
            return None
        return sum(len(list((folder / part).iterdir())) for part in ("cur", "new"))

    def messages(self, mailbox: str) -> list[bytes]:
        imap = self.connect()
        try:
            typ, _ = imap.select(f'"{mailbox}"', readonly=True)
            assert typ == "OK", mailbox
            typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
            return [bytes(d[1]) for d in data if isinstance(d, tuple)]
        finally:
            imap.logout()


CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
auth_mechanisms = plain login
# a refused login answers at once (the default waits 2s)
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/passwd
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
"""


@pytest.fixture
def dovecot(ca: trustme.CA, ca_file: Path) -> Iterator[Dovecot]:
    """A private Dovecot with the user ``test``; skips (fails under CI) without Dovecot
    or without root."""
    binary = dovecot_path()
    need(binary is not None, "Dovecot (Debian package dovecot-imapd)")
    need(os.geteuid() == 0, "root, to run a private Dovecot")
    assert binary is not None
    # under /tmp, not tmp_path: Dovecot's own users must reach it (pytest's is 0700)
    root = Path(tempfile.mkdtemp(prefix="mailspool-dovecot-"))
    try:
        root.chmod(0o755)
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "cert.pem").write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        nobody = pwd.getpwnam("nobody")
        home = root / "home" / USER
        home.mkdir(parents=True)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        (root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{home}::\n"
        )
        server = Dovecot(free_port(), free_port(), ca_file, home / "Maildir")
        config = root / "dovecot.conf"
        config.write_text(
            CONFIG.format(dir=root, imap_port=server.imap_port, imaps_port=server.imaps_port)
        )
        with (root / "stderr").open("wb") as stderr:
            proc = subprocess.Popen([binary, "-F", "-c", str(config)], stderr=stderr)
        try:
            if not (wait_listening(server.imaps_port, 10) and wait_listening(server.imap_port, 10)):
                logs = [root / "stderr", root / "dovecot.log"]
                said = [f.read_text() for f in logs if f.exists()]
                pytest.fail(f"Dovecot did not start: {' '.join(said)}")
            yield server
        finally:
            # SIGKILL: its children see the master gone and exit; SIGTERM waits a second
            proc.kill()
            proc.wait(10)
    finally:
        shutil.rmtree(root, ignore_errors=True)
