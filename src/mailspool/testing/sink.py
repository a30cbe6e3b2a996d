"""Postfix's ``smtp-sink`` as a test relay (fault injection by its options), with its
dump file read back and checked against the wire invariant."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from itertools import pairwise

from mailspool.testing.invariant import (
    CRLF,
    Received,
    Violation,
    header_section,
    violation_of,
    violation_report,
)
from mailspool.testing.servers import free_port, wait_listening

# Postfix installs its tools in sbin, which is often not on an unprivileged user's PATH
_SBIN = os.pathsep.join(("/usr/sbin", "/usr/local/sbin", "/sbin"))


def postfix_tool(name: str) -> str | None:
    """Where Postfix's ``smtp-sink`` or ``smtp-source`` is: the path in
    ``MAILSPOOL_SMTP_SINK`` / ``MAILSPOOL_SMTP_SOURCE`` when set, else the first on
    ``PATH``, else in the usual sbin folders; None when it is nowhere."""
    override = os.environ.get("MAILSPOOL_" + name.upper().replace("-", "_"))
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def smtp_sink_path() -> str | None:
    """Postfix's ``smtp-sink`` (see ``postfix_tool``)."""
    return postfix_tool("smtp-sink")


def smtp_source_path() -> str | None:
    """Postfix's ``smtp-source`` (see ``postfix_tool``)."""
    return postfix_tool("smtp-source")


class SMTPSink:
    """Postfix's smtp-sink on a free loopback port. ``options`` are passed through, e.g.
    ``["-r", "rcpt"]`` to reject RCPT, ``["-Q", "data"]`` to hang up after DATA.

    With ``dump`` every complete message is appended to a dump file (``-D``), which
    ``dumped()`` reads back and ``violations()`` checks with ``check_message``: ``bcc``
    names recipients that may be absent from To/Cc, ``unchecked`` (the reason) turns the
    check off. smtp-sink drops every CR as it dumps, so bare CR or LF cannot be seen in a
    dump (a bare LF still shows as a line break, which a header check sees).
    """

    def __init__(
        self,
        *options: str,
        backlog: int = 256,
        dump: bool = False,
        bcc: Iterable[str] = (),
        unchecked: str | None = None,
    ) -> None:
        self.options = list(options)
        self.backlog = backlog
        self.bcc = {a.lower() for a in bcc}
        self.unchecked = unchecked
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # a file smtp-sink appends every message to (-D); in a directory of its own that
        # the unprivileged smtp-sink can reach (pytest's tmp_path is private to root)
        self._dump_dir = tempfile.mkdtemp(prefix="mailspool-sink-") if dump else None
        self.dump = os.path.join(self._dump_dir, "messages") if self._dump_dir else None
        # written before each message (-S), so that no message content can pass for one
        self._separator = f"--mailspool-sink-{uuid.uuid4().hex}--".encode()

    def dumped(self) -> list[Received]:
        """Every message in the dump file, in order: only complete ones (smtp-sink appends
        a message when its final dot arrives, whatever it then answers), their lines
        ending in CRLF again."""
        if self.dump is None or not os.path.exists(self.dump):
            return []
        with open(self.dump, "rb") as f:
            chunks = (b"\n" + f.read()).split(b"\n" + self._separator + b"\n")[1:]
        # each split took the newline that ended the message before it
        return [
            _parse_dumped(c + b"\n" if i < len(chunks) - 1 else c) for i, c in enumerate(chunks)
        ]

    def received(self) -> list[tuple[list[str], str]]:
        """(recipients, Message-ID) of every message in the dump file, in order."""
        out = []
        for m in self.dumped():
            for line in header_section(m.data).split(CRLF):
                if line.lower().startswith(b"message-id:"):
                    out.append((m.recipients, line.split(b":", 1)[1].strip().decode()))
                    break
        return out

    def violations(self) -> list[Violation]:
        """The dumped messages the sink accepted that broke the invariant (call after
        ``stop``, or a message being dumped may be missed)."""
        if self.unchecked is not None or not _accepts_final_dot(self.options):
            return []
        return [v for m in self.dumped() if (v := violation_of(m, self.bcc)) is not None]

    def assert_clean(self) -> None:
        """Raise AssertionError if any message dumped so far broke the invariant."""
        if found := self.violations():
            raise AssertionError(violation_report(found))

    @staticmethod
    def available() -> bool:
        """Whether smtp-sink can be found (see ``postfix_tool``)."""
        return smtp_sink_path() is not None

    def start(self) -> SMTPSink:
        sink = smtp_sink_path()
        if sink is None:
            raise RuntimeError(
                "Postfix's smtp-sink was not found on PATH or in /usr/sbin; install Postfix "
                "or set MAILSPOOL_SMTP_SINK to its path"
            )
        cmd = [sink, *self.options]
        if self._dump_dir is not None and self.dump is not None:
            os.chmod(self._dump_dir, 0o777)
            cmd += ["-S", self._separator.decode() + "\\n", "-D", self.dump]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root otherwise
        cmd += [f"127.0.0.1:{self.port}", str(self.backlog)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_listening(self.port):
            self.stop()
            raise RuntimeError(f"smtp-sink did not start: {' '.join(cmd)}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        if self._dump_dir is not None:
            shutil.rmtree(self._dump_dir, ignore_errors=True)

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop()
        found = self.violations() if exc_type is None else []
        self.cleanup()
        if found:
            raise AssertionError(violation_report(found))


def _accepts_final_dot(options: Sequence[str]) -> bool:
    """Whether smtp-sink run with ``options`` answers the final dot with 250 (not with
    -f/-r, a rejection, or -q/-Q, a hang-up)."""
    for flag, value in pairwise(options):
        if flag in ("-f", "-r", "-q", "-Q") and "." in re.split(r"[\s,]+", value):
            return False
    return True


def _parse_dumped(chunk: bytes) -> Received:
    """One message of an smtp-sink dump: its X-* records (envelope), a three-line
    Received header of smtp-sink's own, the message with LF line endings, then the empty
    line its final dot leaves."""
    sender, rcpts = "", []
    pos = 0
    while True:
        end = chunk.index(b"\n", pos)
        key, _, value = chunk[pos:end].partition(b": ")
        pos = end + 1
        if key == b"Received":
            break
        if key == b"X-Mail-Args":
            sender = _dumped_path(value)
        elif key == b"X-Rcpt-Args":
            rcpts.append(_dumped_path(value))
    pos = chunk.index(b"\n", chunk.index(b"\n", pos) + 1) + 1  # its two continuations
    data = chunk[pos:].removesuffix(b"\n").replace(b"\n", CRLF)
    return Received(sender, rcpts, data)


def _dumped_path(args: bytes) -> str:
    """The address of a MAIL or RCPT argument as dumped: ``<a@example.com> SIZE=10``."""
    text = args.decode("utf-8", "replace").strip()
    if text.startswith("<") and ">" in text:
        return text[1 : text.index(">")]
    return text.split(" ", 1)[0]
