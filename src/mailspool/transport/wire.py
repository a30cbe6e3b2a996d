"""The byte level of an SMTP client connection: reply parsing, flow control, and waiting
for replies or for the server to read what was written, each with a timeout."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass

from mailspool.errors import ConnectError, DeliveryError, ReplyError, SMTPTimeout, Stage

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b\s*")
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and its text (the lines of a multi-line reply joined by
    newlines, the enhanced status code still in front)."""

    code: int
    text: str

    @property
    def enhanced(self) -> str | None:
        m = _ENHANCED.match(self.text)
        return m.group(1) if m else None

    def error(self, stage: Stage, cls: type[DeliveryError] = ReplyError) -> DeliveryError:
        if self.code == 421:  # the server is closing, at STARTTLS or AUTH too: temporary
            cls = ReplyError
        m = _ENHANCED.match(self.text)
        text = self.text[m.end() :] if m else self.text
        return cls(text.replace("\n", " "), code=self.code, enhanced=self.enhanced, stage=stage)


class ReplyProtocol(asyncio.Protocol):
    """Parses replies as they arrive and wakes whoever waits for the n-th one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self._buf = bytearray()
        self._lines: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self.lost: BaseException | None = None
        # set while writing is paused: True when the transport wants data again, False
        # when the connection was lost with bytes still unsent
        self._can_write: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = buf.rfind(b"\n")
        if end < 0:
            if len(buf) > MAX_REPLY_BYTES:
                self._fail(ConnectError("reply line too long", stage=Stage.REPLY))
            return
        chunk = bytes(buf[: end + 1])
        del buf[: end + 1]
        for line in chunk.split(b"\n")[:-1]:
            text = line[4:].rstrip(b"\r").decode("utf-8", "replace")
            self._lines.append(text)
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    self._fail(ConnectError(f"malformed reply {line[:80]!r}", stage=Stage.REPLY))
                    return
                self.replies.append(Reply(code, "\n".join(self._lines)))
                self._lines = []
        self._wake()

    def discard_buffered(self) -> None:
        """Forget every reply and partial line read so far. After STARTTLS nothing sent in
        plaintext may be taken for a reply (RFC 3207 section 4.2; CVE-2011-0411)."""
        self.replies.clear()
        self._buf.clear()
        self._lines = []

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done() and (len(self.replies) >= self._want or self.lost):
            w.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = exc or ConnectError("connection closed by the server", stage=Stage.REPLY)
        self._wake()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(False)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(True)
        self._can_write = None

    async def drain(self, timeout: float) -> None:
        """Wait until the transport wants more data. Raises SMTPTimeout at "data" when its
        buffer has not shrunk for ``timeout`` seconds: the limit is on a stalled send, not
        on the whole message (RFC 5321 4.5.3.2.5), so a slow link still gets through."""
        transport = self.transport
        assert transport is not None
        while (can_write := self._can_write) is not None:
            size = transport.get_write_buffer_size()
            await asyncio.wait((can_write,), timeout=timeout)
            if can_write.done():
                if not can_write.result():
                    # the final dot, last in the buffer, never left: not delivered
                    raise lost_error(self.lost or ConnectionResetError("closed"), Stage.DATA)
            elif transport.get_write_buffer_size() >= size:
                # still buffered, so the final dot has not left either: "data", not "dot"
                raise SMTPTimeout(
                    f"the server read none of the message for {timeout:g}s", stage=Stage.DATA
                )

    async def wait_for_replies(self, n: int, timeout: float, stage: Stage) -> None:
        if len(self.replies) >= n:
            return
        if self.lost is not None:
            raise lost_error(self.lost, stage)
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._want = n
        # call_later instead of wait_for: no extra task per reply on the hot path
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if len(self.replies) < n:
            if self.lost is not None:
                raise lost_error(self.lost, stage)
            raise SMTPTimeout(f"no reply within {timeout:g}s", stage=stage)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def lost_error(exc: BaseException, stage: Stage) -> DeliveryError:
    if isinstance(exc, DeliveryError):  # a fresh error: the stored one may be raised again
        err: DeliveryError = type(exc)(exc.text, code=exc.code, enhanced=exc.enhanced, stage=stage)
        err.__cause__ = exc
        return err
    err = ConnectError(f"connection lost: {exc}", stage=stage)
    err.__cause__ = exc
    return err


def stuff(data: bytes) -> bytes:
    """Dot-stuff and terminate a CRLF message for DATA."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
