"""Structured logs on stderr: readable on a terminal, JSON lines otherwise.

``configure`` sets up structlog and routes the standard library's logging (uvicorn,
asyncio) through the same renderer, so every line of a process has one format.

:class:`LogObserver` writes one event per state change of a job::

    event               level    fields
    message sent        info     job_id campaign domain attempt code elapsed_ms [refused]
    message deferred    warning  job_id campaign domain attempt code enhanced stage kind
                                 retry_at
    message dead        error    job_id campaign domain attempt code reason
    message suppressed  info     job_id campaign domain attempt (every recipient on the
                                 suppression list: not sent)
    message cancelled   info     job_id campaign domain attempt (its campaign was
                                 cancelled: not sent)
    relay paused        warning  code stage kind retry_in_s

``domain`` is the first recipient's domain; the full addresses (``recipients``) and the
relay's reply text (``reply``, which often quotes an address) are added only at debug
level. Tracebacks are rendered without local variables, which could hold secrets.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TextIO

from mailspool.delivery.classify import Verdict
from mailspool.delivery.observer import Observer
from mailspool.errors import AuthFailure, DeliveryError, TLSFailure
from mailspool.models import DeadReason, Job
from mailspool.transport.base import Delivery

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """``auto`` is ``console`` on a terminal and ``json`` otherwise."""
    if fmt != "auto":
        return fmt
    return "console" if (stream or sys.stderr).isatty() else "json"


class _SafeStream:
    """Writes that never raise: a closed or broken stderr (a pipe whose reader went away)
    must not turn a delivery or an API request into an error."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


def _structlog() -> ModuleType:
    """structlog, imported without rich when it is not loaded yet: structlog imports rich
    (50 ms of a command's start-up) for rich tracebacks and reprs, and these logs use
    neither (tracebacks are plain, without locals). rich stays importable afterwards."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # import of rich halted
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    structlog = _structlog()
    out: Any = _SafeStream(stream or sys.stderr)
    fmt = resolve_format(fmt, out)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        exc: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(),
            # rich tracebacks would print local variables, and a local may hold a secret
            exception_formatter=structlog.dev.plain_traceback,
        )
        exc = []
    numeric = LEVELS.get(level.lower(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, *exc, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # each event and its newline in one write: processes sharing stderr (--processes)
        # never interleave within a line (print writes the newline on its own)
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # the standard library's loggers (uvicorn, asyncio) in the same format
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared[1:], structlog.stdlib.add_logger_name, *exc],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_mailspool", False):
            root.removeHandler(old)
    handler._mailspool = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)


def get_logger(name: str = "mailspool") -> Any:
    import structlog  # imported here: see _structlog

    return structlog.get_logger(name)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class LogObserver(Observer):
    """One log event per state change of a job, told by the worker.

    ``level``: the configured log level (what is logged at all); ``log``: the logger
    (``mailspool.worker`` by default); ``per_message``: the level of the ``message sent``
    events. On a terminal the progress bar and the summary speak for ``send``, so the
    caller may lower it to debug there.
    """

    def __init__(self, level: str = "info", per_message: str = "info", log: Any = None) -> None:
        self.log = log if log is not None else get_logger("mailspool.worker")
        threshold = LEVELS.get(level, logging.INFO)
        self.debug = threshold <= logging.DEBUG
        self._sent_level = LEVELS.get(per_message, logging.INFO)
        self._sent_on = self._sent_level >= threshold
        self._warn_on = threshold <= logging.WARNING

    @classmethod
    def for_level(cls, level: str) -> LogObserver:
        """Per-message events at info, except on a terminal, where ``send`` shows a
        progress bar that log lines would break up (they are at debug there)."""
        per_message = "debug" if sys.stderr.isatty() else "info"
        return cls(level, per_message)

    def _fields(self, job: Job) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "job_id": job.id,
            "campaign": job.campaign,
            "domain": job.domain,
            "attempt": job.attempts,
        }
        if self.debug:
            fields["recipients"] = list(job.recipients)
        return fields

    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        if not self._sent_on:
            return
        fields = self._fields(job)
        fields.update(state="sent", code=delivery.code, elapsed_ms=round(elapsed * 1000, 1))
        if delivery.refused:
            fields["refused"] = len(delivery.refused)
        if self.debug:
            fields["reply"] = delivery.reply
        self.log.log(self._sent_level, "message sent", **fields)

    def deferred(
        self, job: Job, err: DeliveryError, verdict: Verdict, not_before: float, elapsed: float
    ) -> None:
        if not self._warn_on:
            return
        fields = self._fields(job)
        fields.update(
            state="deferred",
            code=err.code,
            enhanced=err.enhanced,
            stage=err.stage,
            kind=verdict.kind,
            retry_at=_iso(not_before),
            retry_in_s=round(max(0.0, not_before - time.time()), 1),
        )
        if self.debug:
            fields["reply"] = err.reply
        self.log.warning("message deferred", **fields)

    def throttled(self, job: Job, provider: str, err: DeliveryError) -> None:
        # the provider asked to slow down: the message waits (no attempt charged)
        if not self._warn_on:
            return
        fields = self._fields(job)
        fields.update(
            state="held back", provider=provider, code=err.code, enhanced=err.enhanced,
            stage=err.stage,
        )  # fmt: skip
        if self.debug:
            fields["reply"] = err.reply
        self.log.warning("provider throttled", **fields)

    def dead(self, job: Job, reason: DeadReason, reply: str) -> None:
        fields = self._fields(job)
        fields.update(state="dead", reason=reason.value, code=reply_code(reply))
        if self.debug:
            fields["reply"] = reply
        self.log.error("message dead", **fields)

    def suppressed(self, job: Job) -> None:
        if not self._sent_on:
            return
        fields = self._fields(job)
        fields["state"] = "suppressed"
        self.log.log(self._sent_level, "message suppressed", **fields)

    def cancelled(self, job: Job) -> None:
        if not self._sent_on:
            return
        fields = self._fields(job)
        fields["state"] = "cancelled"
        self.log.log(self._sent_level, "message cancelled", **fields)

    def relay_paused(self, err: DeliveryError, delay: float) -> None:
        # refused credentials or TLS are a misconfiguration that waiting will not mend:
        # an error, so that an operator's alerting on errors sees it
        misconfigured = isinstance(err, AuthFailure | TLSFailure)
        if self._warn_on or misconfigured:
            emit = self.log.error if misconfigured else self.log.warning
            emit(
                "relay paused",
                code=err.code,
                stage=err.stage,
                error=type(err).__name__,
                retry_in_s=round(delay, 1),
            )


def reply_code(reply: str) -> int | None:
    """The SMTP reply code at the start of a stored reply line, if there is one."""
    head = reply[:3]
    if len(head) == 3 and head.isascii() and head.isdigit() and head[0] in "2345":
        return int(head)
    return None
