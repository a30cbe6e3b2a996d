"""--webhook [TYPES=]URL: parsed, checked, named without its secrets."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailspool.queue.events import EventType
from mailspool.webhooks.endpoints import parse_webhook, parse_webhooks


def test_a_url_takes_every_event() -> None:
    ep = parse_webhook("https://hooks.example.com/mail")
    assert ep.types is None and ep.wants(EventType.BOUNCED)
    assert ep.name == "https://hooks.example.com/mail"


def test_a_filter_takes_only_its_types() -> None:
    ep = parse_webhook("sent, Dead=http://127.0.0.1:9000/hook?x=1")
    assert ep.types == {EventType.SENT, EventType.DEAD}
    assert ep.url == "http://127.0.0.1:9000/hook?x=1"
    assert ep.wants(EventType.DEAD) and not ep.wants(EventType.DEFERRED)


def test_the_name_hides_credentials() -> None:
    ep = parse_webhook("https://user:s3cret@hooks.example.com/x?token=abc")
    assert "s3cret" not in ep.name and "abc" not in ep.name and "s3cret" not in str(ep)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("sent,opened=https://example.com/x", "unknown event type opened"),
        ("=https://example.com/x", "unknown event type"),
        ("https://example.com/a b", "no blanks"),
        ("https://example.com:99999/x", "port"),
        ("https:///x", "with a host"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_webhook(spec)


def test_the_same_url_twice_is_one_endpoint() -> None:
    eps = parse_webhooks(["sent=http://h/x", "dead=http://h/x", "http://h/y"])
    assert [(e.url, e.types) for e in eps] == [
        ("http://h/x", {EventType.SENT, EventType.DEAD}),
        ("http://h/y", None),
    ]
    [both] = parse_webhooks(["sent=http://h/x", "http://h/x"])
    assert both.types is None


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_any_text_is_an_endpoint_or_a_value_error(text: str) -> None:
    try:
        ep = parse_webhook(text)
    except ValueError as exc:
        assert str(exc)
        return
    # taken: a URL with no blank or control character, named without its password
    assert ep.url.isprintable() and not any(c.isspace() for c in ep.url)
    assert ep.url.startswith(("http://", "https://"))


@given(
    st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1),
)
@settings(max_examples=200)
def test_a_password_never_shows_in_the_name(password: str) -> None:
    secret = quote(password, safe="") + "Zq9"
    ep = parse_webhook(f"https://user:{secret}@hooks.example.com/x?token={secret}")
    assert secret not in ep.name and secret not in str(ep)
