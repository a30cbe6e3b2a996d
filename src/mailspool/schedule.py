"""When mail may go: a campaign's send time (``--send-at``) and send windows (``--window
'Mon-Fri 09:00-17:00'``) in a timezone (``--timezone``, or each recipient's own from a
column). A job is due at the first moment, at or after its send time, that lies inside a
window of its timezone; one claimed outside its windows waits for the next, uncharged.

A window is days and a time range, ``Mon-Fri 09:00-17:00``, ``Sat,Sun 10:00-12:30`` or
``daily 08:00-20:00``; several are separated by ``;``. Times are wall-clock times of the
timezone (daylight saving time included); ``24:00`` ends a window at midnight.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "Schedule",
    "Window",
    "check_send_at",
    "parse_send_at",
    "parse_timezone",
    "parse_windows",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*"
)
#: the longest a timezone name is (IANA names are far shorter)
MAX_TZ = 64


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 is Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, after start (1440: midnight)

    def __str__(self) -> str:
        days = ",".join(DAYS[d].capitalize() for d in sorted(self.days))
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(text: str) -> int:
    hours, _, mins = text.partition(":")
    h, m = int(hours), int(mins)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValueError(f"{text} is not a time of day (00:00 to 24:00)")
    return h * 60 + m


def _days(text: str) -> frozenset[int]:
    spec = text.strip().lower()
    if spec in ("daily", "every day", "*"):
        return frozenset(range(7))
    found: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            raise ValueError(f"{part!r} is not a day or a range of days such as Mon-Fri")
        a = DAYS.index(first[:3])
        b = DAYS.index(last[:3]) if last else a
        found.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # Fri-Mon wraps
    return frozenset(found)


def parse_windows(text: str) -> tuple[Window, ...]:
    """``Mon-Fri 09:00-17:00; Sat 10:00-12:00`` as windows; ValueError saying why not."""
    windows = []
    for part in text.split(";"):
        m = _WINDOW.fullmatch(part)
        if m is None:
            raise ValueError(
                f"{part.strip()!r} is not a window such as 'Mon-Fri 09:00-17:00' (days, then"
                " a time range; several separated by ;)"
            )
        start, end = _minutes(m["start"]), _minutes(m["end"])
        if end <= start:
            raise ValueError(f"{part.strip()!r}: the window must end after it starts")
        windows.append(Window(_days(m["days"]), start, end))
    return tuple(windows)


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA timezone such as ``Europe/Berlin``; ValueError naming it when unknown."""
    clean = name.strip()
    if not clean or len(clean) > MAX_TZ or not clean.isprintable() or ".." in clean:
        raise ValueError(f"{clean[:MAX_TZ]!r} is not a timezone such as Europe/Berlin")
    try:
        return ZoneInfo(clean)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{clean!r} is not a timezone such as Europe/Berlin") from None


def parse_send_at(text: str, tz: ZoneInfo | None = None) -> float:
    """A moment in ISO 8601 (``2026-12-05T09:00``, ``2026-12-05 09:00+01:00``); one
    without an offset is in ``tz`` (UTC when None). Unix seconds."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text.strip()[:40]!r} is not a date and time such as 2026-12-05T09:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz or dt.UTC)
    return when.timestamp()


#: how far ahead a send time may be (seconds): further is a typo, not a plan
MAX_AHEAD = 366 * 86400.0


def check_send_at(text: str, now: float, tz: ZoneInfo | None = None) -> float:
    """A send time (:func:`parse_send_at`) at most :data:`MAX_AHEAD` from ``now``; one
    in the past means at once. ValueError saying why not."""
    at = parse_send_at(text, tz)
    if at > now + MAX_AHEAD:
        raise ValueError(f"{text.strip()[:40]!r} is more than a year ahead")
    return at


@dataclass(frozen=True, slots=True)
class Schedule:
    """A campaign's send time and windows, and the timezone of jobs that name none."""

    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"
    send_at: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.windows and not self.send_at

    def due(self, at: float, timezone: str = "") -> float:
        """The first moment at or after ``at`` (and the send time) inside a window of
        ``timezone`` (the schedule's when empty)."""
        at = max(at, self.send_at)
        if not self.windows:
            return at
        tz = parse_timezone(timezone or self.timezone)
        local = dt.datetime.fromtimestamp(at, tz)
        by_start = sorted(self.windows, key=lambda w: w.start)
        for offset in range(8):
            day = local.date() + dt.timedelta(days=offset)
            for w in by_start:
                if day.weekday() not in w.days:
                    continue
                midnight = dt.datetime.combine(day, dt.time(), tz)
                opens = _at(midnight, w.start)
                closes = _at(midnight, w.end)
                if closes > at:
                    return max(at, opens)
        raise AssertionError("a window opens every week")  # parse_windows made sure

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": "; ".join(str(w) for w in self.windows),
            "timezone": self.timezone,
            "send_at": self.send_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        text = data.get("windows") or ""
        return cls(
            parse_windows(text) if text else (),
            str(data.get("timezone") or "UTC"),
            float(data.get("send_at") or 0.0),
        )


def _at(midnight: dt.datetime, minutes: int) -> float:
    """Unix seconds of ``minutes`` after local ``midnight`` on the wall clock (a time
    that a change to summer time skips counts as the moment after the gap)."""
    wall = midnight.replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    tz = midnight.tzinfo
    assert tz is not None
    return wall.replace(tzinfo=tz).timestamp()
