"""The values of settings that are not plain numbers or text: durations (``30s``,
``1h30m``), sizes (``10M``), listening addresses (``HOST:PORT``) and expiry times
(``30d`` or a date)."""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: where ``mailspool inbound`` listens unless told otherwise: loopback
DEFAULT_LISTEN = "127.0.0.1:2525"
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}


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
