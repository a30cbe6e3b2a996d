"""The checks of each setting's value beyond its type (config/settings.py): validators
of fields.py, given the raw value (``mode="before"``) or the converted one; each raises
ValueError saying what is wrong. The checks of the other layers are imported by the
validators that use them: every command loads its settings, and most give none of those
options."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailspool.config.fields import validator
from mailspool.config.values import parse_duration, parse_listen, parse_size
from mailspool.errors import ConfigError
from mailspool.models import CAMPAIGN_NAME
from mailspool.schedule import check_send_at, parse_timezone, parse_windows
from mailspool.urls import check_mailbox_name

__all__ = ["ANY_SENDER", "LOG_FORMATS", "LOG_LEVELS", "SettingsChecks", "checked"]

#: --allowed-from's "any domain"
ANY_SENDER = "*"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")

_T = TypeVar("_T")
_R = TypeVar("_R")


def checked(check: Callable[[_T], _R], value: _T) -> _R:
    """``check(value)``, its ConfigError as the ValueError a validator raises."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class SettingsChecks:
    """The validators of the Settings fields (a base class of Settings)."""

    @validator(
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
    @staticmethod
    def _duration(v: Any) -> float:
        if not isinstance(v, str | int | float):
            raise ValueError(f"bad duration {v!r}: use e.g. 30s, 10m, 2h, 5d")
        return parse_duration(v)

    @validator("imap_poll", mode="before")
    @staticmethod
    def _imap_poll(v: Any) -> float | None:
        return None if v is None else SettingsChecks._duration(v)

    @validator("listen")
    @staticmethod
    def _listen(v: str) -> str:
        parse_listen(v)
        return v

    @validator("max_size", mode="before")
    @staticmethod
    def _max_size(v: Any) -> int:
        if not isinstance(v, str | int):
            raise ValueError(f"{v!r}: expected a size such as 10M or 512K")
        return parse_size(v)

    @validator("smtp", mode="before")
    @staticmethod
    def _smtp(v: Any) -> list[str]:
        # one URL from the environment (a URL may hold a comma); a list from flags or file
        if v is None or v == "":
            return []
        return [v] if isinstance(v, str) else list(v)

    @validator("domain_rate", mode="before")
    @staticmethod
    def _domain_rate(v: Any) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        if items:
            from mailspool.delivery.limits import parse_domain_rates

            checked(parse_domain_rates, items)
        return items

    @validator("allowed_from", mode="before")
    @staticmethod
    def _allowed_from(v: Any) -> list[str]:
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        for item in items:
            if item and item != ANY_SENDER:
                from mailspool.message.addresses import normalize_domain

                try:
                    normalize_domain(item)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a domain: {exc}") from None
        return [i for i in items if i]

    @validator("unsubscribe_address", mode="before")
    @staticmethod
    def _unsubscribe_address(v: Any) -> list[str]:
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

    @validator("webhook", mode="before")
    @staticmethod
    def _webhook(v: Any) -> list[str]:
        # blanks separate endpoints in an environment variable: a filter holds commas
        items = v.split() if isinstance(v, str) else [str(i).strip() for i in v]
        if items:
            from mailspool.webhooks.endpoints import parse_webhooks

            checked(parse_webhooks, items)
        return [i for i in items if i]

    @validator("dkim", mode="before")
    @staticmethod
    def _dkim(v: Any) -> list[str]:
        # the keys themselves are loaded (and refused, naming the file) at start: wiring.py
        items = [p.strip() for p in v.split(",")] if isinstance(v, str) else list(v)
        return [i for i in items if i]

    @validator("unsubscribe_url")
    @staticmethod
    def _unsubscribe_url(v: str | None) -> str | None:
        if v is not None:
            from mailspool.message.unsubscribe import check_unsubscribe_url

            checked(check_unsubscribe_url, v)
        return v

    @validator("return_path")
    @staticmethod
    def _return_path(v: str | None) -> str | None:
        if v is None:
            return None
        from mailspool.message.verp import check_return_path

        return checked(check_return_path, v)

    @validator("imap_processed_folder")
    @staticmethod
    def _imap_processed_folder(v: str) -> str:
        return checked(lambda name: check_mailbox_name(name, "the folder"), v)

    @validator("window")
    @staticmethod
    def _window(v: str | None) -> str | None:
        return None if v is None else "; ".join(map(str, checked(parse_windows, v)))

    @validator("send_at")
    @staticmethod
    def _send_at(v: str | None) -> str | None:
        if v is not None:
            check_send_at(v, time.time())  # the form; its timezone is applied by schedule
        return v

    @validator("timezone")
    @staticmethod
    def _timezone(v: str) -> str:
        return str(checked(parse_timezone, v))

    @validator("list_name")
    @staticmethod
    def _list_name(v: str) -> str:
        from mailspool.message.optout import check_list_name

        check_list_name(v)
        return v

    @validator("rate", "default_domain_rate")
    @staticmethod
    def _rate(v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.limits import parse_rate

            checked(parse_rate, v)
        return v

    @validator("providers")
    @staticmethod
    def _providers(v: str | None) -> str | None:
        if v is not None and v.lower() != "off":  # read now: a bad file stops before any work
            from mailspool.delivery.providers import load_providers

            checked(load_providers, Path(v))
        return v

    @validator("dns_server")
    @staticmethod
    def _dns_server(v: str | None) -> str | None:
        if v is not None:
            from mailspool.delivery.mx import parse_nameserver

            checked(parse_nameserver, v)
        return v

    @validator("limits_redis")
    @staticmethod
    def _limits_redis(v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("redis://", "rediss://")):
            raise ValueError("shared limits live in Redis: give a redis:// or rediss:// URL")
        return v

    @validator("campaign")
    @staticmethod
    def _campaign(v: str | None) -> str | None:
        if v is not None and not re.fullmatch(CAMPAIGN_NAME, v):
            raise ValueError(
                "a campaign name is 1-100 letters, digits, '.', '_' or '-', not starting"
                " with a punctuation mark"
            )
        return v

    @validator("log_level")
    @staticmethod
    def _log_level(v: str) -> str:
        if v.lower() not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        return v.lower()

    @validator("log_format")
    @staticmethod
    def _log_format(v: str) -> str:
        if v.lower() not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
        return v.lower()
