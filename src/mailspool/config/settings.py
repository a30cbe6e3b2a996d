"""The settings of every command, one field per option, checked as they are made
(fields.py), from the flags given over the environment over the config file (sources.py),
with their defaults."""

# no ``from __future__ import annotations``: a Fields class's annotations are its fields'
# types at run time (fields.py)

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailspool.config.checks import ANY_SENDER, LOG_FORMATS, LOG_LEVELS, SettingsChecks, checked
from mailspool.config.fields import Fields, ValidationError, setting, validator
from mailspool.config.sources import field_name, from_environment, from_file, merged, option_name
from mailspool.config.values import DEFAULT_LISTEN, parse_listen
from mailspool.errors import ConfigError
from mailspool.schedule import Schedule, parse_send_at, parse_timezone, parse_windows
from mailspool.urls import DEFAULT_PROCESSED_FOLDER

if TYPE_CHECKING:
    from mailspool.delivery.limits import LimitSettings
    from mailspool.delivery.relays import RelaySpec

__all__ = ["ANY_SENDER", "LOG_FORMATS", "LOG_LEVELS", "RELAY_NAME", "RelayTable", "Settings",
           "load_settings"]  # fmt: skip

RELAY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class RelayTable(Fields):
    """A ``[[relay]]`` table: a relay of a relay set (docs/relays.md)."""

    name: str
    url: str
    priority: int = setting(0, ge=0)
    weight: int = setting(1, ge=1, le=1000)
    rate: str | None = None
    concurrency: int = setting(0, ge=0)
    from_domains: list[str] = setting(factory=list)

    @validator("name")
    @staticmethod
    def _name(v: str) -> str:
        if not re.fullmatch(RELAY_NAME, v):
            raise ValueError(f"String should match pattern '{RELAY_NAME}'")
        return v

    @validator("rate")
    @staticmethod
    def _rate(v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.limits import parse_rate

            checked(parse_rate, v)
        return v

    @validator("from_domains")
    @staticmethod
    def _from_domains(v: list[str]) -> list[str]:
        from mailspool.message.addresses import normalize_domain

        return [checked(normalize_domain, d.strip().lstrip("@")) for d in v]


class Settings(SettingsChecks, Fields):
    """Every setting of every command, validated: one field per option, named as the
    option (``from_addr`` is ``--from``), durations in seconds. Made by
    :func:`load_settings` from the flags given, the environment and the config file
    (mailspool.config says in which precedence); docs/cli.md describes each option."""

    template: Path | None = None
    html: Path | None = None
    from_addr: str | None = None
    subject: str | None = None
    #: relay URLs (``--smtp``, repeatable); several, or ``relay`` tables, are a relay set
    smtp: list[str] = setting(factory=list)
    #: ``[[relay]]`` tables of mailspool.toml (delivery/relays.py)
    relay: list[RelayTable] = setting(factory=list)
    queue: str = "sqlite:///mailspool.db"
    store: str | None = None
    limits_redis: str | None = None
    #: per-provider shaping rules: a TOML file, None for the shipped ones, "off" for none
    providers: str | None = None
    resolve_mx: bool = False
    dns_server: str | None = None
    concurrency: int = setting(8, ge=1, le=1000)
    rate: str | None = None
    domain_rate: list[str] = setting(factory=list)
    default_domain_rate: str | None = None
    domain_concurrency: int = setting(0, ge=0)
    campaign: str | None = None
    key_column: str | None = None
    attachment_dir: Path | None = None
    #: child processes that render rows; None: automatic (intake.pool.default_processes)
    render_processes: int | None = setting(None, ge=0, le=64)
    #: delivery processes of send and worker; None: automatic (cli/processes.py)
    processes: int | None = setting(None, ge=1, le=64)
    outbox: Path = Path("outbox")
    lease: float = setting(60.0, gt=0)
    max_wait: float = setting(900.0, ge=0)
    retry_first: float = setting(300.0, gt=0)
    retry_factor: float = setting(2.0, ge=1.0, allow_inf_nan=False)
    retry_max_delay: float = setting(3600.0, gt=0)
    max_age: float = setting(5 * 86400.0, gt=0)
    max_attempts: int = setting(0, ge=0)
    connect_timeout: float = setting(30.0, gt=0)
    command_timeout: float = setting(300.0, gt=0)
    data_timeout: float = setting(600.0, gt=0)
    log_level: str = "info"
    log_format: str = "auto"
    #: print the result as JSON on stdout (``--json``, on the commands that have it)
    json_output: bool = False
    #: ``worker --drain``: exit when nothing is due
    drain: bool = False
    # mailspool serve (HTTP API) and the worker's metrics endpoint
    host: str = "127.0.0.1"
    port: int = setting(8025, ge=0, le=65535)
    workers: int = setting(1, ge=0, le=64)
    max_body: int = setting(10 * 1024 * 1024, ge=1024)
    #: an attachment posted to the API, decoded (api/attachments.py): 413 above it
    max_attachment: int = setting(10 * 1024 * 1024, ge=1)
    #: the attachments of one API request together, decoded: 413 above it
    max_request_attachments: int = setting(25 * 1024 * 1024, ge=1)
    metrics_port: int | None = setting(None, ge=0, le=65535)
    #: sender domains serve accepts besides --from's (api/senders.py); "*" for any
    allowed_from: list[str] = setting(factory=list)
    #: DKIM keys, DOMAIN:SELECTOR:KEYFILE (message/dkim_keys.py); loaded at start
    dkim: list[str] = setting(factory=list)
    #: refuse at enqueue a row whose From domain has no DKIM key
    dkim_required: bool = False
    #: the one-click unsubscribe endpoint (message/unsubscribe.py): URL/TOKEN per message
    unsubscribe_url: str | None = None
    #: the mailing list a campaign's messages are for (the --list option)
    list_name: str = "default"
    #: the VERP envelope sender's base address (message/verp.py): LOCAL+TOKEN@DOMAIN
    return_path: str | None = None
    # when mail may go (schedule.py): the campaign's start, windows and timezone
    send_at: str | None = None
    window: str | None = None
    timezone: str = "UTC"
    timezone_column: str | None = None
    # mailspool inbound ingest (inbound/handle.py SoftBouncePolicy)
    #: temporary bounces of an address, within soft_bounce_window, that suppress it
    soft_bounce_limit: int = setting(3, ge=1)
    soft_bounce_window: float = setting(7 * 86400.0, gt=0)
    #: mailbox addresses that receive unsubscribe requests by mail
    unsubscribe_address: list[str] = setting(factory=list)
    # job events (docs/bounces.md): webhooks/ and GET /v1/events
    #: webhook endpoints, [TYPES=]URL (webhooks/endpoints.py)
    webhook: list[str] = setting(factory=list)
    webhook_timeout: float = setting(10.0, gt=0)
    #: how long a failing event is retried before it is dead-lettered
    webhook_retry_period: float = setting(3 * 86400.0, gt=0)
    #: how long send waits at its end for its events to be delivered
    webhook_drain: float = setting(30.0, ge=0)
    #: how long job events are kept for GET /v1/events and the webhooks
    event_retention: float = setting(7 * 86400.0, gt=0)
    # mailspool inbound: the SMTP listener of returned mail (inbound/listener.py)
    listen: str = DEFAULT_LISTEN
    #: the largest message it takes, bytes (inbound.DEFAULT_MAX_BYTES)
    max_size: int = setting(10 * 1024 * 1024, ge=1)
    #: STARTTLS is offered with this PEM certificate chain and key
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: the bounce mailbox read over IMAP (inbound/imap.py): imaps://user@host/INBOX
    imap: str | None = None
    #: where the messages read over IMAP are moved, created when missing
    imap_processed_folder: str = DEFAULT_PROCESSED_FOLDER
    #: read the IMAP mailbox again every so many seconds (None: once)
    imap_poll: float | None = setting(None, gt=0)

    def __init__(self, **flags: Any) -> None:
        """``flags`` (option or field names) over the environment over the config file."""
        given = {field_name(k): v for k, v in flags.items()}
        fields = type(self).model_fields
        values = merged(merged(from_file(fields), from_environment(fields)), given)
        super().__init__(**values)

    @validator("relay")
    @staticmethod
    def _relay(v: list[RelayTable]) -> list[RelayTable]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("each relay needs a name of its own")
        return v

    @property
    def listen_address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return parse_listen(self.listen)

    @property
    def schedule(self) -> Schedule | None:
        """The campaign's send time and windows (schedule.py), None without either."""
        if self.send_at is None and self.window is None:
            return None
        tz = parse_timezone(self.timezone)
        return Schedule(
            parse_windows(self.window) if self.window else (),
            self.timezone,
            parse_send_at(self.send_at, tz) if self.send_at else 0.0,
        )

    @property
    def relays(self) -> "list[RelaySpec]":
        """Every relay: the ``--smtp`` URLs (named ``relay1``, ``relay2``, ...) and the
        ``[[relay]]`` tables; empty: no relay (the outbox)."""
        from mailspool.delivery.limits import parse_rate
        from mailspool.delivery.relays import RelaySpec  # only the delivering commands

        specs = [RelaySpec(f"relay{i}", url) for i, url in enumerate(self.smtp, 1)]
        for t in self.relay:
            rate = parse_rate(t.rate) if t.rate else None
            domains = tuple(t.from_domains)
            specs.append(
                RelaySpec(t.name, t.url, t.priority, t.weight, rate, t.concurrency, domains)
            )
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError("a [[relay]] table takes a name --smtp gives (relay1, relay2, ...)")
        return specs

    @property
    def rate_per_second(self) -> float | None:
        from mailspool.delivery.limits import parse_rate

        return parse_rate(self.rate) if self.rate else None

    @property
    def limits(self) -> "LimitSettings":
        from mailspool.delivery.limits import LimitSettings, parse_domain_rates, parse_rate

        return LimitSettings(
            rate=self.rate_per_second,
            domain_rates=parse_domain_rates(self.domain_rate),
            default_domain_rate=(
                parse_rate(self.default_domain_rate) if self.default_domain_rate else None
            ),
            domain_concurrency=self.domain_concurrency,
        )


def load_settings(**flags: Any) -> Settings:
    """Settings from flags (None means not given), the environment and the config file.

    Flags may use option spellings (``from``, ``retry-first``). Every problem is a
    :class:`ConfigError` naming the setting.
    """
    given = {field_name(k): v for k, v in flags.items() if v is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(loc, message) for loc, message in exc.problems)
        raise ConfigError(f"invalid settings: {problems}") from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def _problem(loc: tuple[str | int, ...], message: str) -> str:
    where = ".".join(option_name(str(p)) for p in loc) or "settings"
    return f"{where}: {message.removeprefix('Value error, ')}"
