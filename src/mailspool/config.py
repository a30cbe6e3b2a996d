"""Typed settings. Precedence: command-line flag > MAILSPOOL_<NAME> environment variable
> ``mailspool.toml`` in the working directory (or the file named by MAILSPOOL_CONFIG)
> default.

Each setting has one name, spelled as its option: ``--retry-first`` is the environment
variable ``MAILSPOOL_RETRY_FIRST`` and ``retry-first`` (or ``retry_first``) in the file;
``--from`` is ``MAILSPOOL_FROM`` and ``from``. Empty environment variables count as unset.
Unknown keys in the file are an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import math
import os
import re
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mailspool.errors import ConfigError
from mailspool.models import CAMPAIGN_NAME
from mailspool.schedule import (
    Schedule,
    check_send_at,
    parse_send_at,
    parse_timezone,
    parse_windows,
)
from mailspool.urls import DEFAULT_PROCESSED_FOLDER, check_mailbox_name

# the checks of the other layers are imported by the validators that use them: every
# command loads its settings, and most of them give none of those options
if TYPE_CHECKING:
    from mailspool.delivery.limits import LimitSettings
    from mailspool.delivery.relays import RelaySpec

ENV_PREFIX = "MAILSPOOL_"
#: option names that differ from the field name
#: (``json`` would shadow pydantic's BaseModel.json)
_OPTION_TO_FIELD = {"from": "from_addr", "list": "list_name", "json": "json_output"}
_FIELD_TO_OPTION = {v: k for k, v in _OPTION_TO_FIELD.items()}

_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: --allowed-from's "any domain"
ANY_SENDER = "*"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")
#: where ``mailspool inbound`` listens unless told otherwise: loopback
DEFAULT_LISTEN = "127.0.0.1:2525"
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}

_T = TypeVar("_T")
_R = TypeVar("_R")


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``1.5``, ``250ms``, ``30s``, ``10m``, ``2h``, ``5d`` or ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use e.g. 30s, 10m, 2h, 5d")
    if isinstance(value, int | float):
        if not 0 <= value < math.inf:
            raise ValueError(f"bad duration {value!r}: must be a finite number of seconds >= 0")
        return float(value)
    text = value.strip().lower()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueError(f"bad duration {value!r}: use e.g. 30s, 10m, 2h, 5d")
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def parse_size(value: str | int) -> int:
    """Bytes from ``10485760``, ``512K`` or ``10M`` (K and M are 1024 and 1024²)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    found = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _SIZE_UNITS or int(found.group(1)) == 0:
        raise ValueError(f"{value!r}: expected a size such as 10M or 512K")
    return int(found.group(1)) * _SIZE_UNITS[unit]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:25`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def _checked(check: Callable[[_T], _R], value: _T) -> _R:
    """``check(value)``, its ConfigError as the ValueError a pydantic validator raises."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


#: 10000-01-01T00:00:00Z, the first moment a datetime cannot hold
_YEAR_10000 = 253402300800.0


def parse_expiry(text: str, now: float) -> float:
    """When a suppression given ``text`` expires: a duration from ``now`` (``30d``) or an
    ISO 8601 date or time (``2026-01-31``, ``2026-01-31T12:00:00Z``; no zone: UTC), in
    the future. ValueError saying what is wrong (the command line and the API name the
    field)."""
    from mailspool.intake.suppression_csv import parse_time

    try:
        at = now + parse_duration(text)
    except ValueError:
        try:
            at = parse_time(text)
        except ValueError:
            raise ValueError(
                "give a duration (30d, 12h) or an ISO 8601 date or time"
                " (2026-01-31, 2026-01-31T12:00:00Z)"
            ) from None
    if at <= now:
        raise ValueError("that is not in the future")
    if at >= _YEAR_10000:  # no date can show it (datetime ends with 9999)
        raise ValueError("that is too far in the future: give a time before the year 10000")
    return at


def config_file() -> Path:
    return Path(os.environ.get("MAILSPOOL_CONFIG") or "mailspool.toml")


def option_name(field: str) -> str:
    """The user-facing name of a setting: ``from_addr`` -> ``from``."""
    return _FIELD_TO_OPTION.get(field, field)


def _field_name(key: str) -> str:
    """A flag, file key or environment name -> the field: ``retry-first`` -> ``retry_first``."""
    key = key.strip().lower().replace("-", "_")
    return _OPTION_TO_FIELD.get(key, key)


RELAY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class RelayTable(BaseModel):
    """A ``[[relay]]`` table: a relay of a relay set (docs/relays.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=RELAY_NAME)
    url: str
    priority: int = Field(default=0, ge=0)
    weight: int = Field(default=1, ge=1, le=1000)
    rate: str | None = None
    concurrency: int = Field(default=0, ge=0)
    from_domains: list[str] = Field(default_factory=list)

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.limits import parse_rate

            _checked(parse_rate, v)
        return v

    @field_validator("from_domains")
    @classmethod
    def _from_domains(cls, v: list[str]) -> list[str]:
        from mailspool.message.addresses import normalize_domain

        return [_checked(normalize_domain, d.strip().lstrip("@")) for d in v]


class Settings(BaseModel):
    """Every setting of every command, validated: one field per option, named as the
    option (``from_addr`` is ``--from``), durations in seconds. Made by
    :func:`load_settings` from the flags given, the environment and the config file
    (the precedence above); docs/cli.md describes each option."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    template: Path | None = None
    html: Path | None = None
    from_addr: str | None = None
    subject: str | None = None
    #: relay URLs (``--smtp``, repeatable); several, or ``relay`` tables, are a relay set
    smtp: list[str] = Field(default_factory=list)
    #: ``[[relay]]`` tables of mailspool.toml (delivery/relays.py)
    relay: list[RelayTable] = Field(default_factory=list)
    queue: str = "sqlite:///mailspool.db"
    store: str | None = None
    limits_redis: str | None = None
    #: per-provider shaping rules: a TOML file, None for the shipped ones, "off" for none
    providers: str | None = None
    resolve_mx: bool = False
    dns_server: str | None = None
    concurrency: int = Field(default=8, ge=1, le=1000)
    rate: str | None = None
    domain_rate: list[str] = Field(default_factory=list)
    default_domain_rate: str | None = None
    domain_concurrency: int = Field(default=0, ge=0)
    campaign: str | None = None
    key_column: str | None = None
    attachment_dir: Path | None = None
    #: child processes that render rows; None: automatic (intake.pool.default_processes)
    render_processes: int | None = Field(default=None, ge=0, le=64)
    #: delivery processes of send and worker; None: automatic (cli/processes.py)
    processes: int | None = Field(default=None, ge=1, le=64)
    outbox: Path = Path("outbox")
    lease: float = Field(default=60.0, gt=0)
    max_wait: float = Field(default=900.0, ge=0)
    retry_first: float = Field(default=300.0, gt=0)
    retry_factor: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    retry_max_delay: float = Field(default=3600.0, gt=0)
    max_age: float = Field(default=5 * 86400.0, gt=0)
    max_attempts: int = Field(default=0, ge=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    command_timeout: float = Field(default=300.0, gt=0)
    data_timeout: float = Field(default=600.0, gt=0)
    log_level: str = "info"
    log_format: str = "auto"
    #: print the result as JSON on stdout (``--json``, on the commands that have it)
    json_output: bool = False
    #: ``worker --drain``: exit when nothing is due
    drain: bool = False
    # mailspool serve (HTTP API) and the worker's metrics endpoint
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)
    workers: int = Field(default=1, ge=0, le=64)
    max_body: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: an attachment posted to the API, decoded (api/attachments.py): 413 above it
    max_attachment: int = Field(default=10 * 1024 * 1024, ge=1)
    #: the attachments of one API request together, decoded: 413 above it
    max_request_attachments: int = Field(default=25 * 1024 * 1024, ge=1)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: sender domains serve accepts besides --from's (api/senders.py); "*" for any
    allowed_from: list[str] = Field(default_factory=list)
    #: DKIM keys, DOMAIN:SELECTOR:KEYFILE (message/dkim_keys.py); loaded at start
    dkim: list[str] = Field(default_factory=list)
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
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_window: float = Field(default=7 * 86400.0, gt=0)
    #: mailbox addresses that receive unsubscribe requests by mail
    unsubscribe_address: list[str] = Field(default_factory=list)
    # job events (docs/bounces.md): webhooks/ and GET /v1/events
    #: webhook endpoints, [TYPES=]URL (webhooks/endpoints.py)
    webhook: list[str] = Field(default_factory=list)
    webhook_timeout: float = Field(default=10.0, gt=0)
    #: how long a failing event is retried before it is dead-lettered
    webhook_retry_period: float = Field(default=3 * 86400.0, gt=0)
    #: how long send waits at its end for its events to be delivered
    webhook_drain: float = Field(default=30.0, ge=0)
    #: how long job events are kept for GET /v1/events and the webhooks
    event_retention: float = Field(default=7 * 86400.0, gt=0)
    # mailspool inbound: the SMTP listener of returned mail (inbound/listener.py)
    listen: str = DEFAULT_LISTEN
    #: the largest message it takes, bytes (inbound.DEFAULT_MAX_BYTES)
    max_size: int = Field(default=10 * 1024 * 1024, ge=1)
    #: STARTTLS is offered with this PEM certificate chain and key
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: the bounce mailbox read over IMAP (inbound/imap.py): imaps://user@host/INBOX
    imap: str | None = None
    #: where the messages read over IMAP are moved, created when missing
    imap_processed_folder: str = DEFAULT_PROCESSED_FOLDER
    #: read the IMAP mailbox again every so many seconds (None: once)
    imap_poll: float | None = Field(default=None, gt=0)

    def __init__(self, **flags: Any) -> None:
        """``flags`` (option or field names) over the environment over the config file.
        The layers are merged here rather than by pydantic-settings, whose import would
        cost every command 40 ms at start-up for sources this class does not use."""
        given = {_field_name(k): v for k, v in flags.items()}
        cls = type(self)
        values = _merged(_merged(_from_file(cls), _from_environment(cls)), given)
        super().__init__(**values)

    @field_validator(
        "lease",
        "max_wait",
        "retry_first",
        "retry_max_delay",
        "max_age",
        "connect_timeout",
        "command_timeout",
        "data_timeout",
        "soft_bounce_window",
        "webhook_timeout",
        "webhook_retry_period",
        "webhook_drain",
        "event_retention",
        mode="before",
    )
    @classmethod
    def _duration(cls, v: Any) -> float:
        if not isinstance(v, str | int | float):
            raise ValueError(f"bad duration {v!r}: use e.g. 30s, 10m, 2h, 5d")
        return parse_duration(v)

    @field_validator("imap_poll", mode="before")
    @classmethod
    def _imap_poll(cls, v: Any) -> float | None:
        return None if v is None else cls._duration(v)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("max_size", mode="before")
    @classmethod
    def _max_size(cls, v: Any) -> int:
        if not isinstance(v, str | int):
            raise ValueError(f"{v!r}: expected a size such as 10M or 512K")
        return parse_size(v)

    @field_validator("smtp", mode="before")
    @classmethod
    def _smtp(cls, v: Any) -> list[str]:
        # one URL from the environment (a URL may hold a comma); a list from flags or file
        if v is None or v == "":
            return []
        return [v] if isinstance(v, str) else list(v)

    @field_validator("relay")
    @classmethod
    def _relay(cls, v: list[RelayTable]) -> list[RelayTable]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("each relay needs a name of its own")
        return v

    @field_validator("domain_rate", mode="before")
    @classmethod
    def _domain_rate(cls, v: Any) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        if items:
            from mailspool.delivery.limits import parse_domain_rates

            _checked(parse_domain_rates, items)
        return items

    @field_validator("allowed_from", mode="before")
    @classmethod
    def _allowed_from(cls, v: Any) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        for item in items:
            if item and item != ANY_SENDER:
                from mailspool.message.addresses import normalize_domain

                try:
                    normalize_domain(item)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a domain: {exc}") from None
        return [i for i in items if i]

    @field_validator("unsubscribe_address", mode="before")
    @classmethod
    def _unsubscribe_address(cls, v: Any) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        out = []
        for item in items:
            if item:
                from mailspool.message.addresses import normalize

                try:
                    out.append(normalize(item).lower())
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not an address: {exc}") from None
        return out

    @field_validator("webhook", mode="before")
    @classmethod
    def _webhook(cls, v: Any) -> list[str]:
        # blanks separate endpoints in an environment variable: a filter holds commas
        items = v.split() if isinstance(v, str) else [str(i).strip() for i in v]
        if items:
            from mailspool.webhooks.endpoints import parse_webhooks

            _checked(parse_webhooks, items)
        return [i for i in items if i]

    @field_validator("dkim", mode="before")
    @classmethod
    def _dkim(cls, v: Any) -> list[str]:
        # the keys themselves are loaded (and refused, naming the file) at start: wiring.py
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        return [i for i in items if i]

    @field_validator("unsubscribe_url")
    @classmethod
    def _unsubscribe_url(cls, v: str | None) -> str | None:
        if v is not None:
            from mailspool.message.unsubscribe import check_unsubscribe_url

            _checked(check_unsubscribe_url, v)
        return v

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from mailspool.message.verp import check_return_path

        return _checked(check_return_path, v)

    @field_validator("imap_processed_folder")
    @classmethod
    def _imap_processed_folder(cls, v: str) -> str:
        return _checked(lambda name: check_mailbox_name(name, "the folder"), v)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        return None if v is None else "; ".join(map(str, _checked(parse_windows, v)))

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, v: str | None) -> str | None:
        if v is not None:
            check_send_at(v, time.time())  # the form; its timezone is applied by schedule
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return str(_checked(parse_timezone, v))

    @field_validator("list_name")
    @classmethod
    def _list_name(cls, v: str) -> str:
        from mailspool.message.optout import check_list_name

        check_list_name(v)
        return v

    @field_validator("rate", "default_domain_rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.limits import parse_rate

            _checked(parse_rate, v)
        return v

    @field_validator("providers")
    @classmethod
    def _providers(cls, v: str | None) -> str | None:
        if v is not None and v.lower() != "off":  # read now: a bad file stops before any work
            from mailspool.delivery.providers import load_providers

            _checked(load_providers, Path(v))
        return v

    @field_validator("dns_server")
    @classmethod
    def _dns_server(cls, v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.mx import parse_nameserver

            _checked(parse_nameserver, v)
        return v

    @field_validator("limits_redis")
    @classmethod
    def _limits_redis(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("redis://", "rediss://")):
            raise ValueError("shared limits live in Redis: give a redis:// or rediss:// URL")
        return v

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(CAMPAIGN_NAME, v):
            raise ValueError(
                "a campaign name is 1-100 letters, digits, '.', '_' or '-', not starting"
                " with a punctuation mark"
            )
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.lower() not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        return v.lower()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v.lower() not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
        return v.lower()

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
    def relays(self) -> list[RelaySpec]:
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
    def limits(self) -> LimitSettings:
        from mailspool.delivery.limits import LimitSettings, parse_domain_rates, parse_rate

        return LimitSettings(
            rate=self.rate_per_second,
            domain_rates=parse_domain_rates(self.domain_rate),
            default_domain_rate=(
                parse_rate(self.default_domain_rate) if self.default_domain_rate else None
            ),
            domain_concurrency=self.domain_concurrency,
        )


def _merged(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``low`` updated by ``high``; two tables of one key are merged the same way."""
    out = dict(low)
    for key, value in high.items():
        old = out.get(key)
        out[key] = (
            _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def _from_environment(settings_cls: type[Settings]) -> dict[str, Any]:
    values = {}
    for name in settings_cls.model_fields:
        value = os.environ.get(ENV_PREFIX + option_name(name).upper())
        if value:
            values[name] = value
    return values


def _from_file(settings_cls: type[Settings]) -> dict[str, Any]:
    path = config_file()
    if not path.is_file():
        if os.environ.get("MAILSPOOL_CONFIG"):
            raise ConfigError(f"MAILSPOOL_CONFIG: {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values, unknown = {}, []
    for key, value in data.items():
        name = _field_name(key)
        if name in settings_cls.model_fields:
            values[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
    return values


def load_settings(**flags: Any) -> Settings:
    """Settings from flags (None means not given), the environment and the config file.

    Flags may use option spellings (``from``, ``retry-first``). Every problem is a
    :class:`ConfigError` naming the setting.
    """
    given = {_field_name(k): v for k, v in flags.items() if v is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def _problem(error: Any) -> str:
    where = ".".join(option_name(str(p)) for p in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
