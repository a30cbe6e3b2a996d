"""A real worker, in process, delivering what is due to a server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.observer import Observer
from mailspool.delivery.worker import Worker, WorkerConfig
from mailspool.queue import MemoryQueue
from mailspool.transport import SMTPTransport, parse_smtp_url


async def run_worker(
    queue: MemoryQueue,
    port: int,
    observers: Sequence[Observer],
    limits: LimitSettings | None = None,
) -> Worker:
    """Deliver what is due, then stop (as ``mailspool worker --drain``)."""
    transport = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
    config = WorkerConfig(concurrency=4, limits=limits or LimitSettings(), poll_interval=0.05)
    worker = Worker(queue=queue, transport=transport, config=config, observers=observers)

    async def idle() -> bool:
        st = await queue.stats()
        return st.next_due is None or st.next_due > time.time()

    await asyncio.wait_for(worker.run(idle), 60)
    return worker
