"""Helpers for the deliverability tests: queues of every backend that runs here without a
server, a producer and a job builder with DKIM, unsubscribe links and a list, and a real
worker drained into an in-process SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailspool.delivery.observer import Observer
from mailspool.delivery.retry import RetryPolicy
from mailspool.delivery.worker import Worker, WorkerConfig
from mailspool.intake.builder import Attachments, JobBuilder
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.producer import Producer
from mailspool.intake.rejects import Rejects
from mailspool.intake.sources import Row
from mailspool.message.dkim import Signer
from mailspool.message.dkim_keys import generate_key, load_keys
from mailspool.message.render import Renderer, Template
from mailspool.message.unsubscribe import Secrets, UnsubscribeLinks
from mailspool.queue import MemoryQueue, Queue, SQLiteQueue
from mailspool.transport import SMTPTransport, parse_smtp_url

SECRET = "a test secret that is long enough: 0123456789"
BASE_URL = "https://mail.example.com/u"
#: the backends that need no server; each deliverability test runs on every one of them
BACKENDS = ("memory", "sqlite")

TEMPLATE = """From: News <news@example.com>
To: {{ Email }}
Subject: Hi {{ Name }}

Hi {{ Name }}, this is your update.
"""


@dataclass
class Keys:
    """An RSA and an Ed25519 key for example.com, made by keygen, and the records it
    printed (for the verifiers, in place of DNS)."""

    signer: Signer
    records: list[str]


def make_keys(out: Path) -> Keys:
    specs, records = [], []
    for selector, algorithm in (("rsa1", "rsa"), ("ed1", "ed25519")):
        path, record = generate_key("example.com", selector, algorithm, out_dir=out)
        specs.append(f"example.com:{selector}:{path}")
        records.append(record)
    return Keys(Signer(load_keys(specs)), records)


def links(base_url: str = BASE_URL) -> UnsubscribeLinks:
    return UnsubscribeLinks(base_url, Secrets([SECRET]))


async def open_backend(name: str, tmp_path: Path) -> Queue:
    queue: Queue = MemoryQueue() if name == "memory" else SQLiteQueue(tmp_path / "q.db")
    await queue.open()
    return queue


async def backend(name: str, tmp_path: Path, *, suppressing: bool = False) -> AsyncIterator[Queue]:
    """An open queue of ``name``; with ``suppressing``, skipped on a backend that keeps
    no suppression list yet."""
    queue = await open_backend(name, tmp_path)
    try:
        if suppressing:
            try:
                queue.suppressions  # noqa: B018 - raises when the backend keeps none
            except NotImplementedError:
                pytest.skip(f"{type(queue).__name__} keeps no suppression list")
        yield queue
    finally:
        await queue.close()


def renderer(template: str = TEMPLATE, html: str | None = None) -> Renderer:
    return Renderer.build(Template.parse(template, html_text=html), None, None)


def job_builder(
    tmp_path: Path, d: Deliverability, template: str = TEMPLATE, *, campaign: str = "c1"
) -> JobBuilder:
    return JobBuilder(
        renderer=renderer(template),
        campaign=campaign,
        attachments=Attachments(base=tmp_path),
        deliverability=d,
    )


def producer(
    tmp_path: Path, queue: Queue, d: Deliverability, template: str = TEMPLATE, **kw: str
) -> Producer:
    return Producer(
        queue=queue,
        renderer=renderer(template),
        campaign=kw.get("campaign", "c1"),
        rejects=Rejects(tmp_path / "rejects.csv"),
        attachments=Attachments(base=tmp_path),
        deliverability=d,
    )


def people(*emails: str, first: int = 2) -> list[Row]:
    return [Row(first + i, {"Name": e.split("@")[0], "Email": e}) for i, e in enumerate(emails)]


def worker(
    queue: Queue, port: int, *, observers: Sequence[Observer] = (), concurrency: int = 2
) -> Worker:
    config = WorkerConfig(
        concurrency=concurrency,
        poll_interval=0.02,
        retry=RetryPolicy(first=0.05, jitter=0),
    )
    transport = SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
    return Worker(queue=queue, transport=transport, config=config, observers=observers)


async def drain(w: Worker, queue: Queue) -> None:
    """Run the worker until nothing is pending (every job final)."""

    async def idle() -> bool:
        return (await queue.stats()).pending == 0

    await asyncio.wait_for(w.run(idle), 60)
    assert w.error is None


async def counts(queue: Queue) -> dict[str, int]:
    st = await queue.stats()
    return {k: v for k, v in st.counts.items() if v}


def expire_leases() -> None:
    """Long enough for a lease of 0.01 s to have run out."""
    time.sleep(0.05)
