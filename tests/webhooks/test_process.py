"""The dispatcher in its child process, over a SQLite queue that parent and child both
open: the events written as soon as the command starts, before the child has come
up, are delivered too (the parent makes the endpoint known to the store first)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mailspool.models import Outcome, State
from mailspool.queue import make_queue
from mailspool.testing.webhooks import WebhookReceiver
from mailspool.webhooks.dispatcher import DispatchSettings
from mailspool.webhooks.endpoints import parse_webhooks
from mailspool.webhooks.process import ChildSpec, DispatcherProcess
from mailspool.webhooks.run import WebhookRun
from tests.support.jobs import make_job

SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()


async def test_events_written_before_the_child_is_up_are_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSPOOL_WEBHOOK_SECRET", SECRET)
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    with WebhookReceiver() as rx:
        spec = ChildSpec(url, None, (rx.url,), DispatchSettings(poll=0.05, gather=0.0))
        async with make_queue(url) as q:
            run = WebhookRun(
                q.events, parse_webhooks(spec.webhooks), process=DispatcherProcess(spec)
            )
            async with run:
                jobs = [make_job(i) for i in range(1, 4)]
                await q.enqueue(jobs)  # at once: the child is still importing
                claimed = await q.claim("w", 3, 60)
                await q.record(
                    "w", [Outcome(j.id, State.SENT, "250 ok", reason="") for j in claimed]
                )
                left = await run.drain(30)
            assert all(b.waiting == 0 for b in left.values()), left
        assert sorted(json.loads(r.body)["data"]["job_id"] for r in rx.requests) == sorted(
            j.id for j in jobs
        )
