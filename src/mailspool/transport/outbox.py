"""The outbox: write each message as an .eml file instead of sending it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mailspool.transport.base import Delivery, Envelope, Ready, Transport


class OutboxTransport(Transport):
    """Writes each message to ``directory`` as ``<job id>.eml``, the envelope in
    ``X-Envelope-From``/``X-Envelope-To`` headers in front; sends nothing (used when no
    relay is given)."""

    delivers = False

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.description = f"outbox {self.directory}/ (nothing is sent)"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _write(self, envelope: Envelope) -> Path:
        path = self.directory / f"{envelope.job_id or abs(hash(envelope.data))}.eml"
        tmp = path.with_suffix(".tmp")
        head = f"X-Envelope-From: <{envelope.sender}>\r\n" + "".join(
            f"X-Envelope-To: <{r}>\r\n" for r in envelope.recipients
        )
        tmp.write_bytes(head.encode("ascii") + envelope.data)
        os.replace(tmp, path)  # a crash never leaves a half-written .eml
        return path

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        if ready is not None:
            await ready()
        envelope.begin()  # the file is written even if the send is cancelled from here
        path = await asyncio.to_thread(self._write, envelope)
        return Delivery(250, f"written to {path}")
