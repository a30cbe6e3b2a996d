"""Send windows and send times (schedule.py): parsing, the next moment a job may go
(daylight saving time included), and, property-based, that any text given as a window,
a timezone or a send time is refused with a ValueError or understood, and that the due
time is never earlier than asked and always inside a window."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailspool.schedule import (
    Schedule,
    check_send_at,
    parse_send_at,
    parse_timezone,
    parse_windows,
)
from tests.support.strategies import TEXT

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def local(ts: float, tz: ZoneInfo = BERLIN) -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime("%a %Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Mon-Fri 09:00-17:00", "Mon,Tue,Wed,Thu,Fri 09:00-17:00"),
        ("sat,SUN 10:00 - 12:30", "Sat,Sun 10:00-12:30"),
        ("daily 00:00-24:00", "Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-24:00"),
        ("Fri-Mon 8:00-9:00; Wed 13:00-14:00", "Mon,Fri,Sat,Sun 08:00-09:00; Wed 13:00-14:00"),
    ],
)
def test_windows_are_read_and_shown(text: str, shown: str) -> None:
    assert "; ".join(map(str, parse_windows(text))) == shown


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("9-5", "not a window"),
        ("Mon-Fri 17:00-09:00", "must end after it starts"),
        ("Someday 09:00-10:00", "not a day"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 09:00-24:30", "not a time of day"),
        ("", "not a window"),
    ],
)
def test_bad_windows_say_why(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_windows(text)


def test_due_is_now_inside_a_window_else_the_next_opening() -> None:
    s = Schedule(parse_windows("Mon-Fri 09:00-17:00"), "Europe/Berlin")
    assert local(s.due(at("2026-12-04T10:30"))) == "Fri 2026-12-04 10:30"  # open: now
    assert local(s.due(at("2026-12-04T17:00"))) == "Mon 2026-12-07 09:00"  # closes at 17:00
    assert local(s.due(at("2026-12-05T12:00"))) == "Mon 2026-12-07 09:00"  # weekend
    assert local(s.due(at("2026-12-07T06:00"))) == "Mon 2026-12-07 09:00"
    # a recipient's own timezone: 10:30 in Berlin is 18:30 in Tokyo, closed until Monday 9:00
    tokyo = ZoneInfo("Asia/Tokyo")
    due = s.due(at("2026-12-04T10:30"), "Asia/Tokyo")
    assert local(due, tokyo) == "Mon 2026-12-07 09:00"


def test_the_send_time_comes_first_then_the_window() -> None:
    start = at("2026-12-05T08:00")  # a Saturday
    s = Schedule(parse_windows("Mon-Fri 09:00-17:00"), "Europe/Berlin", start)
    assert local(s.due(at("2026-12-01T10:00"))) == "Mon 2026-12-07 09:00"
    assert Schedule(send_at=start).due(at("2026-12-01T10:00")) == start
    assert Schedule(send_at=start).due(start + 60) == start + 60


def test_wall_clock_times_hold_across_daylight_saving_changes() -> None:
    s = Schedule(parse_windows("daily 02:30-03:30"), "Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00; 02:30 does not exist that day
    due = s.due(at("2026-03-29T00:00"))
    assert local(due) == "Sun 2026-03-29 03:30" or local(due) == "Sun 2026-03-29 03:00"
    assert due >= at("2026-03-29T00:00")
    # 2026-10-25: 02:00-03:00 happens twice; the window opens at the first 02:30
    due = s.due(at("2026-10-25T00:00"))
    assert local(due) == "Sun 2026-10-25 02:30"


def test_timezones_and_send_times() -> None:
    assert str(parse_timezone(" America/New_York ")) == "America/New_York"
    for bad in ("Mars/Olympus", "../etc/passwd", "", "x" * 100, "Europe/Berlin\x00"):
        with pytest.raises(ValueError, match="not a timezone"):
            parse_timezone(bad)
    assert parse_send_at("2026-12-05T09:00", BERLIN) == at("2026-12-05T09:00")
    assert parse_send_at("2026-12-05 08:00+00:00", BERLIN) == at("2026-12-05T09:00")
    assert parse_send_at("2026-12-05T09:00") == at("2026-12-05T09:00", ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="not a date and time"):
        parse_send_at("next tuesday")
    with pytest.raises(ValueError, match="more than a year ahead"):
        check_send_at("2030-01-01T00:00", at("2026-12-04T00:00"))


WINDOW = st.builds(
    lambda days, a, b: f"{days} {a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}",
    st.sampled_from(["Mon", "Tue-Thu", "Fri-Mon", "daily", "Sat,Sun", "Wed"]),
    st.integers(0, 1439),
    st.integers(1, 1440),
)
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kathmandu",
                         "Pacific/Chatham", "Australia/Lord_Howe"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(window=WINDOW, zone=ZONES, when=st.floats(1.7e9, 2.2e9))
def test_due_is_never_early_and_always_inside_a_window(window: str, zone: str, when: float) -> None:
    try:
        windows = parse_windows(window)
    except ValueError:
        return  # an empty range: refused, clearly
    due = Schedule(windows, zone).due(when)
    assert due >= when
    t = dt.datetime.fromtimestamp(due, ZoneInfo(zone))
    minute = t.hour * 60 + t.minute + t.second / 60
    # inside (a skipped wall-clock hour may move an opening to just after the gap)
    assert any(t.weekday() in w.days and w.start - 60 <= minute <= w.end for w in windows)


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_any_text_as_a_window_timezone_or_time_is_understood_or_refused(text: str) -> None:
    for parse in (parse_windows, parse_timezone, parse_send_at):
        try:
            parse(text)
        except ValueError as exc:
            assert str(exc)
