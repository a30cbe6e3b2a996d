"""Dashboard sessions (api/sessions.py): ids, expiry, ending, and bounded tables."""

from __future__ import annotations

from mailspool.api.sessions import ANONYMOUS_S, Sessions


def test_a_session_is_found_by_its_id_only_and_ends_when_told() -> None:
    sessions = Sessions()
    sid, session = sessions.start(signed_in=True, now=100.0)
    assert sessions.get(sid, now=101.0) is session
    assert sessions.get(sid + "x", now=101.0) is None
    assert sessions.get(None) is None and sessions.get("") is None
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("nope")
    assert not session.csrf_ok(None)
    sessions.end(sid)
    assert sessions.get(sid, now=102.0) is None


def test_sessions_expire_when_idle_or_too_old() -> None:
    sessions = Sessions(idle=10.0, lifetime=100.0)
    sid, _ = sessions.start(signed_in=True, now=0.0)
    for t in range(5, 100, 5):  # used every 5 s: never idle, but old at last
        assert sessions.get(sid, now=float(t)) is not None
    assert sessions.get(sid, now=101.0) is None
    idle, _ = sessions.start(signed_in=True, now=0.0)
    assert sessions.get(idle, now=11.0) is None
    form, _ = sessions.start(signed_in=False, now=0.0)
    assert sessions.get(form, now=ANONYMOUS_S + 1) is None


def test_login_forms_cannot_push_out_a_signed_in_session() -> None:
    sessions = Sessions(max_signed_in=2, max_anonymous=3)
    signed = [sessions.start(signed_in=True, now=0.0)[0] for _ in range(2)]
    forms = [sessions.start(signed_in=False, now=0.0)[0] for _ in range(50)]
    assert len(sessions) == 5
    assert all(sessions.get(s, now=1.0) for s in signed)
    assert sessions.get(forms[0], now=1.0) is None and sessions.get(forms[-1], now=1.0)
    third = sessions.start(signed_in=True, now=2.0)[0]
    assert sessions.get(signed[0], now=3.0) is None  # the least recently used went
    assert sessions.get(third, now=3.0)
