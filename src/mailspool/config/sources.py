"""Where settings come from, below the command line's flags: ``MAILSPOOL_<NAME>``
environment variables over ``mailspool.toml`` in the working directory (or the file
named by MAILSPOOL_CONFIG). Each setting is spelled as its option: ``--retry-first`` is
``MAILSPOOL_RETRY_FIRST`` and ``retry-first`` (or ``retry_first``) in the file."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mailspool.errors import ConfigError

ENV_PREFIX = "MAILSPOOL_"
#: option names that differ from the field name (``json`` would have shadowed pydantic's
#: BaseModel.json when the settings were a pydantic model)
_OPTION_TO_FIELD = {"from": "from_addr", "list": "list_name", "json": "json_output"}
_FIELD_TO_OPTION = {v: k for k, v in _OPTION_TO_FIELD.items()}


def config_file() -> Path:
    return Path(os.environ.get("MAILSPOOL_CONFIG") or "mailspool.toml")


def option_name(field: str) -> str:
    """The user-facing name of a setting: ``from_addr`` -> ``from``."""
    return _FIELD_TO_OPTION.get(field, field)


def field_name(key: str) -> str:
    """A flag, file key or environment name -> the field: ``retry-first`` -> ``retry_first``."""
    key = key.strip().lower().replace("-", "_")
    return _OPTION_TO_FIELD.get(key, key)


def merged(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``low`` updated by ``high``; two tables of one key are merged the same way."""
    out = dict(low)
    for key, value in high.items():
        old = out.get(key)
        out[key] = (
            merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def from_environment(fields: Collection[str]) -> dict[str, Any]:
    """The settings of ``fields`` set in the environment; empty variables count as unset."""
    values = {}
    for name in fields:
        value = os.environ.get(ENV_PREFIX + option_name(name).upper())
        if value:
            values[name] = value
    return values


def from_file(fields: Collection[str]) -> dict[str, Any]:
    """The settings of the config file, if there is one; an unknown key is an error (a
    typo must not be silently ignored)."""
    path = config_file()
    if not path.is_file():
        if os.environ.get("MAILSPOOL_CONFIG"):
            raise ConfigError(f"MAILSPOOL_CONFIG: {path} does not exist")
        return {}
    import tomllib  # only with a file: most commands run without one

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values, unknown = {}, []
    for key, value in data.items():
        name = field_name(key)
        if name in fields:
            values[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
    return values
