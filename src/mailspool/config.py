"""Typed settings. Precedence: command-line flag > MAILSPOOL_<NAME> environment variable
> ``mailspool.toml`` in the working directory (or MAILSPOOL_CONFIG) > default."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mailspool.errors import ConfigError
from mailspool.ratelimit import parse_rate

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``2h`` or ``5d``."""
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(value.lower())
    if not m:
        raise ValueError(f"bad duration {value!r}: use e.g. 30s, 10m, 2h, 5d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def config_file() -> Path:
    return Path(os.environ.get("MAILSPOOL_CONFIG", "mailspool.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAILSPOOL_", extra="ignore", populate_by_name=True, validate_default=True
    )

    template: Path | None = None
    html: Path | None = None
    from_addr: str | None = Field(default=None, alias="from")
    subject: str | None = None
    smtp: str | None = None
    queue: str = "sqlite:///mailspool.db"
    store: str | None = None
    concurrency: int = Field(default=8, ge=1, le=1000)
    rate: str | None = None
    campaign: str | None = None
    key_column: str | None = None
    attachment_dir: Path | None = None
    outbox: Path = Path("outbox")
    lease: float = Field(default=60.0, gt=0)
    max_wait: float = 900.0
    retry_first: float = 300.0
    retry_factor: float = Field(default=2.0, ge=1.0)
    retry_max_delay: float = 3600.0
    max_age: float = 5 * 86400.0
    max_attempts: int = Field(default=0, ge=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    command_timeout: float = Field(default=300.0, gt=0)
    data_timeout: float = Field(default=600.0, gt=0)
    log_level: str = "info"
    log_format: str = "auto"

    @field_validator(
        "lease", "max_wait", "retry_first", "retry_max_delay", "max_age",
        "connect_timeout", "command_timeout", "data_timeout", mode="before",
    )  # fmt: skip
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            parse_rate(v)
        return v

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v not in ("auto", "console", "json"):
            raise ValueError("log format must be auto, console or json")
        return v

    @property
    def rate_per_second(self) -> float | None:
        return parse_rate(self.rate) if self.rate else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))


def load_settings(**flags: Any) -> Settings:
    """Settings from flags (None means not given), the environment and the config file."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
