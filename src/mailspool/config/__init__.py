"""Typed settings. Precedence: command-line flag > MAILSPOOL_<NAME> environment variable
> ``mailspool.toml`` in the working directory (or the file named by MAILSPOOL_CONFIG)
> default.

Each setting has one name, spelled as its option: ``--retry-first`` is the environment
variable ``MAILSPOOL_RETRY_FIRST`` and ``retry-first`` (or ``retry_first``) in the file;
``--from`` is ``MAILSPOOL_FROM`` and ``from``. Empty environment variables count as unset.
Unknown keys in the file are an error (a typo must not be silently ignored).

settings.py holds the settings and their checks, fields.py what checks and converts
each value (no pydantic: its import cost every command 120 ms at start-up), sources.py
the environment and the file, values.py the parsers of durations, sizes and addresses.
"""

from mailspool.config.settings import (
    ANY_SENDER,
    LOG_FORMATS,
    LOG_LEVELS,
    RELAY_NAME,
    RelayTable,
    Settings,
    load_settings,
)
from mailspool.config.sources import ENV_PREFIX, config_file, option_name
from mailspool.config.values import (
    DEFAULT_LISTEN,
    parse_duration,
    parse_expiry,
    parse_listen,
    parse_size,
)

__all__ = [
    "ANY_SENDER",
    "DEFAULT_LISTEN",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RELAY_NAME",
    "RelayTable",
    "Settings",
    "config_file",
    "load_settings",
    "option_name",
    "parse_duration",
    "parse_expiry",
    "parse_listen",
    "parse_size",
]
