"""Placeholder until the redis backend lands: it says so instead of failing obscurely."""

from __future__ import annotations

from typing import Any, NoReturn

from mailspool.errors import ConfigError


def RedisQueue(*args: Any, **kwargs: Any) -> NoReturn:
    raise ConfigError("the redis queue backend is not available in this version")
