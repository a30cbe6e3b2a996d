"""The worker's side of per-provider shaping (shaping.py): asking before a send, and the
envelope that carries the provider's pool and its "slow down" test to the transport."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mailspool.delivery.parking import Parking
from mailspool.delivery.shaping import HELD, Hold, Shaper
from mailspool.models import Job
from mailspool.transport.base import Envelope

__all__ = ["admitted", "envelope_for"]

log = logging.getLogger(__name__)


async def admitted(shaper: Shaper, parking: Parking, job: Job) -> bool:
    """Whether the job's provider lets it go now; if not, the shaper holds it (still
    leased to the worker) or it is handed back to the queue through ``parking``,
    uncharged."""
    try:
        admission = await shaper.admit(job)
    except Exception as exc:  # never send unshaped: try again shortly
        log.exception("shaping could not admit job %s", job.id)
        admission = Hold(time.time() + 5.0, f"held back: shaping failed: {exc}"[:300])
    if isinstance(admission, Hold):
        parking.hold(job.id, admission.until, admission.reply)
        return False
    return admission is not HELD


def envelope_for(
    job: Job, data: bytes, shaper: Shaper | None, on_begin: Callable[[], None]
) -> Envelope:
    """The envelope of an admitted job: over its provider's connections when shaped;
    ``on_begin`` is told when its transaction begins."""
    if shaper is None:
        return Envelope(job.sender, job.recipients, data, job.id, on_begin=on_begin)
    job_id = job.id
    return Envelope(
        job.sender,
        job.recipients,
        data,
        job_id,
        pool=shaper.provider_of(job_id),
        max_messages=shaper.per_connection(job_id),
        slow_down=lambda err: shaper.slows(job_id, err),
        on_begin=on_begin,
    )
