"""Build concrete backends from settings (the edges only)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mailspool.config import Settings
from mailspool.delivery.limits import Limits, make_limits
from mailspool.delivery.retry import RetryPolicy
from mailspool.errors import ConfigError
from mailspool.queue import Enqueuing, Queue, make_queue, queue_packs_messages
from mailspool.transport import TRANSPORTS, OutboxTransport, Transport

# what only some commands build is imported where it is built: `status`, `dlq` or
# `suppress` need not load the renderer, DKIM, the worker or the webhooks at start-up
if TYPE_CHECKING:
    from mailspool.delivery.observer import Observer
    from mailspool.delivery.providers import Providers
    from mailspool.delivery.shaping import Lanes, Shaper
    from mailspool.delivery.worker import WorkerConfig
    from mailspool.intake.deliverability import Deliverability
    from mailspool.intake.pool import BuildPool
    from mailspool.intake.producer import EnqueuingSuppressing, Producer
    from mailspool.message.dkim_keys import DKIMKey
    from mailspool.message.render import Renderer
    from mailspool.message.verp import ReturnPath
    from mailspool.webhooks.dispatcher import DispatchSettings
    from mailspool.webhooks.run import WebhookRun


def open_queue(settings: Settings) -> Queue:
    """The queue of the settings, to be opened: ``async with open_queue(s) as queue:``."""
    return make_queue(settings.queue, settings.store)


def open_existing_queue(settings: Settings) -> Queue:
    """As :func:`open_queue`, for a command that only reads: an SQLite queue file that
    does not exist is a ConfigError (exit 2) instead of a new, empty queue."""
    url = settings.queue
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise ConfigError(
            f"no queue at {url[len('sqlite:///') :]}: nothing was queued here"
            " (--queue or MAILSPOOL_QUEUE names another)"
        )
    return open_queue(settings)


def make_transport(
    settings: Settings, campaign: str | None = None, *, processes: int = 1
) -> Transport:
    """The outbox without a relay; one relay's transport; or, for several relays (or a
    ``[[relay]]`` table), a relay set (delivery/relays.py), with this process's share of
    each relay's rate and concurrency when ``processes`` deliver (delivery/sharing.py)."""
    if not settings.smtp and not settings.relay:
        return OutboxTransport(settings.outbox / campaign if campaign else settings.outbox)
    timeouts = {
        "connect_timeout": settings.connect_timeout,
        "command_timeout": settings.command_timeout,
        "data_timeout": settings.data_timeout,
    }
    if len(settings.smtp) == 1 and not settings.relay:  # one relay: no set to make
        url = settings.smtp[0]
        return TRANSPORTS.for_url(url).from_url(url, **timeouts)
    specs = settings.relays  # imports delivery/relays.py, as does the set
    from mailspool.delivery.relays import Relay, RelaySet
    from mailspool.delivery.sharing import share_relay
    from mailspool.transport import SMTPTransport, parse_smtp_url

    relays = []
    for spec in specs:
        variable = relay_password_variable(spec.name)
        smtp = parse_smtp_url(spec.url, variable, **timeouts)
        relays.append(Relay(share_relay(spec, processes), SMTPTransport(smtp)))
    return RelaySet(relays)


def relay_password_variable(name: str) -> str:
    """Where a relay of a set takes its password from: MAILSPOOL_SMTP_PASSWORD_<NAME>
    (or its _FILE) when set, else MAILSPOOL_SMTP_PASSWORD as for one relay."""
    own = "MAILSPOOL_SMTP_PASSWORD_" + name.upper().replace("-", "_")
    if os.environ.get(own) or os.environ.get(own + "_FILE"):
        return own
    return "MAILSPOOL_SMTP_PASSWORD"


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        first=settings.retry_first,
        factor=settings.retry_factor,
        max_delay=settings.retry_max_delay,
        max_age=settings.max_age,
        max_attempts=settings.max_attempts,
    )


RETRY_FIELDS = {
    "retry_first": "first",
    "retry_factor": "factor",
    "retry_max_delay": "max_delay",
    "max_age": "max_age",
    "max_attempts": "max_attempts",
}


async def store_campaign_settings(queue: Enqueuing, campaign: str, settings: Settings) -> None:
    """Retry options given when enqueueing become the campaign's own retry schedule,
    and its send time and windows its own schedule, which every worker applies to its
    jobs (per-campaign overrides)."""
    stored: dict[str, object] = {}
    given = settings.model_fields_set & RETRY_FIELDS.keys()
    if given:
        stored["retry"] = {RETRY_FIELDS[f]: getattr(settings, f) for f in sorted(given)}
    schedule = settings.schedule
    if schedule is not None:
        stored["schedule"] = schedule.to_json()
    if stored:
        await queue.set_campaign_settings(campaign, stored)


def attachment_base(settings: Settings) -> Path:
    return settings.attachment_dir or (settings.template.parent if settings.template else Path())


def load_deliverability(settings: Settings, campaign: str | None = None) -> Deliverability:
    """The DKIM keys, the unsubscribe links and the list of the settings, loaded and
    checked now, at start: a key file that cannot be used, a missing unsubscribe secret,
    or a campaign name too long for an unsubscribe link is a ConfigError (exit 2) naming
    it, never a failure in the middle of a run. The secrets are read only when
    --unsubscribe-url (or --return-path, for the VERP envelope senders) is set."""
    from mailspool.intake.deliverability import Deliverability
    from mailspool.message.unsubscribe import MAX_NAME_BYTES, Secrets, UnsubscribeLinks

    keys: tuple[DKIMKey, ...] = ()
    if settings.dkim:  # DKIM's modules load cryptography's keys: 30 ms at start-up
        from mailspool.message.dkim_keys import load_keys

        keys = load_keys(settings.dkim)
    if settings.dkim_required and not keys:
        raise ConfigError("--dkim-required needs at least one key: --dkim DOMAIN:SELECTOR:KEYFILE")
    links = None
    if settings.unsubscribe_url is not None:
        links = UnsubscribeLinks(settings.unsubscribe_url, Secrets.from_environment())
        if campaign is not None and len(campaign.encode()) > MAX_NAME_BYTES:
            raise ConfigError(
                f"--campaign {campaign[:120]!r}: longer than {MAX_NAME_BYTES} bytes, too long"
                " for an unsubscribe link (--unsubscribe-url)"
            )
    signer = None
    if keys:
        from mailspool.message.dkim import Signer

        signer = Signer(keys)
    return Deliverability(
        signer=signer,
        dkim_required=settings.dkim_required,
        unsubscribe=links,
        list_name=settings.list_name,
        return_path=load_return_path(settings),
    )


def load_return_path(settings: Settings) -> ReturnPath | None:
    """The VERP return path of ``--return-path`` with its secrets (read now: a missing or
    short secret is a ConfigError naming the variable), or None when the option is unset.
    What builds jobs signs addresses with it; what reads returned mail verifies them."""
    if settings.return_path is None:
        return None
    from mailspool.message.verp import ReturnPath
    from mailspool.message.verp import secrets_from_environment as verp_secrets

    return ReturnPath(settings.return_path, verp_secrets())


def build_pool(
    settings: Settings,
    renderer: Renderer,
    campaign: str,
    source: Path,
    *,
    delivering: bool,
    deliverability: Deliverability | None = None,
) -> BuildPool | None:
    """Child processes to render a large source with, or None to render in this process.
    They start once the producer has read the first row: the command reaches its rows
    without waiting for (or paying) their start-up, and builds rows itself meanwhile.
    ``deliverability``: as :func:`load_deliverability` makes it (loaded here when not
    given)."""
    from mailspool.intake.sizing import default_processes

    n = settings.render_processes
    if n is None:
        n = default_processes(source, delivering=delivering)
    if n == 0:
        return None
    from mailspool.intake.pool import BuildPool, BuildSpec

    if deliverability is None:
        deliverability = load_deliverability(settings, campaign)
    spec = BuildSpec(
        template=BuildSpec.template_of(renderer.template),
        from_addr=settings.from_addr,
        subject=settings.subject,
        campaign=campaign,
        attachment_dir=attachment_base(settings),
        key_column=settings.key_column,
        pack=queue_packs_messages(settings.queue, settings.store),
        deliverability=deliverability,
        timezone_column=settings.timezone_column,
    )
    return BuildPool(spec=spec, processes=n, start=False)


async def make_producer(
    queue: EnqueuingSuppressing,
    renderer: Renderer,
    campaign: str,
    settings: Settings,
    *,
    pool: BuildPool | None = None,
    deliverability: Deliverability | None = None,
) -> Producer:
    """The producer for a campaign; stores the campaign's retry schedule first.
    ``deliverability``: as :func:`load_deliverability` makes it (the pool's when there
    is one, else loaded here when not given)."""
    from mailspool.intake.builder import Attachments
    from mailspool.intake.producer import Producer
    from mailspool.intake.rejects import Rejects

    if deliverability is None:
        deliverability = (
            pool.spec.deliverability
            if pool is not None
            else load_deliverability(settings, campaign)
        )
    await store_campaign_settings(queue, campaign, settings)
    return Producer(
        queue=queue,
        renderer=renderer,
        campaign=campaign,
        rejects=Rejects(Path(f"{campaign}.rejects.csv")),
        attachments=Attachments(base=attachment_base(settings)),
        key_column=settings.key_column,
        pool=pool,
        deliverability=deliverability,
        timezone_column=settings.timezone_column,
        schedule=settings.schedule,
    )


def worker_config(
    settings: Settings, campaign: str | None = None, *, processes: int = 1
) -> WorkerConfig:
    """How a worker delivers: one of ``processes``, its share of the limits held in a
    process (delivery/sharing.py)."""
    from mailspool.delivery.sharing import share_limits
    from mailspool.delivery.worker import WorkerConfig

    shared = settings.limits if limits_in_redis(settings) else None  # one set for all
    return WorkerConfig(
        concurrency=settings.concurrency,
        lease=settings.lease,
        limits=shared or share_limits(settings.limits, processes),
        campaign=campaign,
        retry=retry_policy(settings),
    )


def load_renderer(settings: Settings) -> Renderer:
    from mailspool.message.render import Renderer, Template

    if settings.html and not settings.template:
        raise ConfigError(
            "--html needs --template (the header block); without a template, rows carry"
            " their own html column"
        )
    template = Template.load(settings.template, settings.html) if settings.template else None
    return Renderer.build(template, settings.from_addr, settings.subject)


def default_campaign(source: Path, settings: Settings) -> str:
    """Stable for the same source file and template content, so a re-run resumes."""
    h = hashlib.sha256(str(source.resolve()).encode())
    for part in (settings.template, settings.html):
        if part is not None:
            h.update(b"\0" + part.read_bytes())
    h.update(f"\0{settings.from_addr}\0{settings.subject}\0{settings.key_column}".encode())
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", source.stem)[:40] or "campaign"
    return f"{stem}-{h.hexdigest()[:10]}"


def observers(settings: Settings) -> list[Observer]:
    """Observers every worker gets from the settings (logs, metrics, tracing)."""
    from mailspool.observe.logs import LogObserver
    from mailspool.observe.tracing import tracing_observer

    found: list[Observer] = [LogObserver.for_level(settings.log_level)]
    if settings.metrics_port is not None:  # counted only where they are served
        from mailspool.observe.metrics import process_metrics  # prometheus_client: not at start-up

        found.append(process_metrics().observer())
    tracing = tracing_observer()  # None unless OTEL_* asks for it (and it is installed)
    if tracing is not None:
        found.append(tracing)
    return found


def limits_in_redis(settings: Settings) -> bool:
    """Whether the limits and adapted provider rates are in Redis, not in each process."""
    return _limits_redis_url(settings) is not None


def _limits_redis_url(settings: Settings) -> str | None:
    from urllib.parse import urlsplit

    for url in (settings.limits_redis, settings.queue, settings.store):
        if url and urlsplit(url).scheme.lower() in ("redis", "rediss"):
            return url
    return None


def check_shared_limits(settings: Settings) -> None:
    """A long-running worker on a RabbitMQ queue with limits and no Redis to hold them
    is refused before it starts: N such workers would send N times the rate, silently."""
    from urllib.parse import urlsplit

    amqp = urlsplit(settings.queue).scheme.lower() in ("amqp", "amqps")
    if amqp and settings.limits.any and _limits_redis_url(settings) is None:
        raise ConfigError(
            "--rate, --domain-rate and --domain-concurrency with an amqp:// queue need"
            " --limits-redis URL: every worker shares the limits held there; without it"
            " each worker would apply them on its own, N workers sending N times the rate"
        )


def limits(settings: Settings) -> Limits | None:
    """Limits shared by every worker of a cluster, or None for this process's own.

    With any limit set, the limits live in the Redis of ``--limits-redis``, else in the
    Redis queue's or store's (under the same key prefix), so every worker using it shares
    them."""
    url = _limits_redis_url(settings) if settings.limits.any else None
    if url is None:
        return None
    return make_limits(url, settings.limits)


def shaping_lanes(settings: Settings) -> Lanes | None:
    """Where the adapted provider rates live: the Redis of the queue, the store or
    ``--limits-redis`` (shared by every worker using it), else this process (None
    without shaping)."""
    if (settings.providers or "").lower() == "off":
        return None
    from mailspool.delivery.shaping import LocalLanes

    url = _limits_redis_url(settings)
    if url is None:
        return LocalLanes()
    from mailspool.delivery.shared_lanes import RedisLanes

    return RedisLanes(url)


def shaper(settings: Settings, lanes: Lanes | None = None, *, processes: int = 1) -> Shaper | None:
    """Per-provider shaping (delivery/shaping.py) by the rules of ``--providers`` (the
    shipped ones by default; ``off``: none), its rates kept in ``lanes`` (default:
    :func:`shaping_lanes`); one of ``processes`` holds its share (delivery/sharing.py)."""
    if (settings.providers or "").lower() == "off":
        return None
    from mailspool.delivery.mx import MXResolver, parse_nameserver
    from mailspool.delivery.providers import load_providers
    from mailspool.delivery.shaping import Shaper
    from mailspool.delivery.sharing import share_providers

    def rules() -> Providers:
        found = load_providers(Path(settings.providers) if settings.providers else None)
        return share_providers(found, processes)  # connections; the rates are shared whole

    # the shipped rules are read at the first message (nothing to check: 3 ms less before
    # it); a file of the user's now, as before: a problem with it stops the command first
    given: Providers | Callable[[], Providers] = rules() if settings.providers else rules
    resolver = None
    if settings.resolve_mx:
        server = parse_nameserver(settings.dns_server) if settings.dns_server else None
        resolver = MXResolver(server)
    # a rate slot further off than a third of the lease: back to the queue, not leased
    horizon = max(0.5, min(5.0, settings.lease / 3))
    return Shaper(given, lanes=lanes or shaping_lanes(settings), resolver=resolver, horizon=horizon)


def dispatch_settings(settings: Settings) -> DispatchSettings:
    """How the webhook options say events are delivered."""
    from mailspool.webhooks.dispatcher import DispatchSettings

    return DispatchSettings(
        timeout=settings.webhook_timeout,
        retry_period=settings.webhook_retry_period,
        retention=settings.event_retention,
    )


def webhook_run(settings: Settings, queue: Queue) -> WebhookRun:
    """The delivery of ``--webhook`` from the queue's event log, to run beside mail
    delivery (``async with``): in a child process when another process can open the
    queue (what a webhook costs comes off another core), else in this one. Without an
    endpoint it only prunes events past ``--event-retention``. The signing secret is
    read now: a missing one is a ConfigError naming the variables."""
    from mailspool.webhooks.run import WebhookRun

    if not settings.webhook:  # the pruning alone: no dispatcher to import (start-up time)
        from mailspool.webhooks.pruning import kept_for

        keep = kept_for(settings.event_retention, settings.webhook_retry_period)
        return WebhookRun(queue.events, [], prune_after=keep)
    from mailspool.observe.logs import configure as configure_logs
    from mailspool.webhooks.dispatcher import Dispatcher
    from mailspool.webhooks.endpoints import parse_webhooks
    from mailspool.webhooks.process import ChildSpec, DispatcherProcess
    from mailspool.webhooks.signing import WebhookSecrets

    endpoints = parse_webhooks(settings.webhook)
    ds = dispatch_settings(settings)
    secrets = WebhookSecrets.from_environment() if endpoints else None
    if endpoints and not settings.queue.startswith("memory:"):
        setup = functools.partial(configure_logs, settings.log_level, settings.log_format)
        spec = ChildSpec(settings.queue, settings.store, tuple(settings.webhook), ds, setup)
        return WebhookRun(queue.events, endpoints, process=DispatcherProcess(spec))
    dispatcher = Dispatcher(queue.events, endpoints, secrets, ds)
    return WebhookRun(queue.events, endpoints, dispatcher=dispatcher)
