"""Placeholder until the rabbitmq backend lands: it says so instead of failing obscurely."""

from __future__ import annotations

from typing import Any, NoReturn

from mailspool.errors import ConfigError


def RabbitMQQueue(*args: Any, **kwargs: Any) -> NoReturn:
    raise ConfigError("the rabbitmq queue backend is not available in this version")
