"""One-click unsubscribe (``/u``) and the suppression list over HTTP (``/v1/suppressions``),
against ``mailspool serve`` run as a user runs it, on the SQLite queue and in memory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.api.ratelimit import ClientLimits, client_key
from mailspool.api.suppressions import cursor, read_cursor
from mailspool.config import parse_expiry as expiry
from mailspool.message.unsubscribe import Secrets, make_token, read_token
from tests.support.api import ApiServer

SECRET = "unsubscribe-secret-" + "x" * 32
SECRETS = Secrets([SECRET])
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture(scope="module", params=["sqlite", "memory"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("unsub")
    queue = f"sqlite:///{tmp / 'queue.db'}" if request.param == "sqlite" else "memory://"
    srv = ApiServer(
        tmp, "--workers", "0", queue=queue, env={"MAILSPOOL_UNSUBSCRIBE_SECRET": SECRET}
    )
    yield srv
    srv.stop()


# every test its own client address (a trusted proxy's X-Forwarded-For: the server's peer is
# 127.0.0.1), so that no test uses up another's requests
_addresses = iter(f"198.51.100.{i}" for i in range(1, 255))


@pytest.fixture
def anon(server: ApiServer) -> Iterator[httpx.Client]:
    """A client with no token, from an address of its own."""
    headers = {"X-Forwarded-For": next(_addresses)}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def entries(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/v1/suppressions", params={"limit": 10_000, **params})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["entries"]
    return found


def token(address: str, list_name: str = "default", campaign: str = "spring") -> str:
    return make_token(SECRETS, address, list_name, campaign)


# -- POST /u/{token}: one click --------------------------------------------------------


def test_one_click_suppresses_the_address_on_its_list_at_once(
    anon: httpx.Client, api: httpx.Client
) -> None:
    r = anon.post(f"/u/{token('Ann@Example.COM', 'news')}", data=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "ann@example.com" in r.text
    (entry,) = [e for e in entries(api) if e["address"] == "ann@example.com"]
    assert entry["list"] == "news" and entry["reason"] == "unsubscribed"
    assert entry["source"] == "unsubscribe:spring" and entry["expires_at"] is None
    assert entry["active"] is True


def test_posting_again_changes_nothing(anon: httpx.Client, api: httpx.Client) -> None:
    url = f"/u/{token('twice@example.com')}"
    assert anon.post(url, data=ONE_CLICK).status_code == 200
    first = [e for e in entries(api) if e["address"] == "twice@example.com"]
    assert anon.post(url, data=ONE_CLICK).status_code == 200
    assert [e for e in entries(api) if e["address"] == "twice@example.com"] == first
    assert len(first) == 1


def test_one_click_as_multipart_form_data(anon: httpx.Client, api: httpx.Client) -> None:
    # RFC 8058 prefers multipart/form-data; providers post url-encoded. Both count.
    r = anon.post(
        f"/u/{token('multi@example.com')}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert r.status_code == 200, r.text
    assert r.request.headers["content-type"].startswith("multipart/form-data")
    assert [e["list"] for e in entries(api) if e["address"] == "multi@example.com"] == ["default"]


@pytest.mark.parametrize(
    "body",
    [{}, {"List-Unsubscribe": "Two-Clicks"}, {"unsubscribe": "One-Click"}],
    ids=["empty", "other-value", "other-field"],
)
def test_a_post_without_the_one_click_form_unsubscribes_nobody(
    anon: httpx.Client, api: httpx.Client, body: dict[str, str]
) -> None:
    r = anon.post(f"/u/{token('noform@example.com')}", data=body)
    assert r.status_code == 400
    assert "noform@example.com" not in {e["address"] for e in entries(api)}


def test_a_get_shows_a_button_and_never_unsubscribes(anon: httpx.Client, api: httpx.Client) -> None:
    url = f"/u/{token('scanned@example.com', 'news')}"
    for _ in range(3):  # a link scanner, a preview, the recipient
        r = anon.get(url)
        assert r.status_code == 200
    assert "scanned@example.com" not in {e["address"] for e in entries(api)}
    page = r.text
    form = re.search(r"<form[^>]*>.*?</form>", page, re.S)
    assert form is not None
    assert 'method="post"' in form.group(0) and "action=" not in form.group(0)  # this URL
    assert 'name="List-Unsubscribe" value="One-Click"' in form.group(0)
    assert "<script" not in page and not re.search(r"(src|href)\s*=", page)  # nothing fetched
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    # the button posts exactly what a browser posts for that form
    assert anon.post(url, data=ONE_CLICK).status_code == 200
    assert "scanned@example.com" in {e["address"] for e in entries(api, list="news")}


def test_what_the_page_shows_is_escaped(anon: httpx.Client) -> None:
    # a list name holds no markup, an address may hold ' and &
    link = "/u/" + token("o'neil&co@example.com")
    r = anon.get(link)
    assert r.status_code == 200
    assert "o&#x27;neil&amp;co@example.com" in r.text and "o'neil&co" not in r.text


def bad_tokens() -> dict[str, str]:
    good = token("victim@example.com")
    payload, mac = good.split(".")
    other = make_token(SECRETS, "mallory@example.com", "default", "spring")
    flipped = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
    return {
        "forged": make_token(
            Secrets(["another-secret-" + "y" * 32]), "victim@example.com", "default", "spring"
        ),
        "altered-payload": f"{flipped}.{mac}",
        "altered-mac": f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BA'}",
        "payload-of-another": f"{other.split('.')[0]}.{mac}",
        "truncated": good[:-3],
        "no-mac": payload,
        "not-a-token": "hello",
    }


def test_bad_tokens_get_400_and_no_detail(anon: httpx.Client, api: httpx.Client) -> None:
    answers = set()
    for name, bad in bad_tokens().items():
        for method in ("GET", "POST"):
            r = anon.request(method, f"/u/{bad}", data=ONE_CLICK if method == "POST" else None)
            assert r.status_code == 400, (name, method)
            answers.add(r.text)
    assert len(answers) == 1  # the same page whatever was wrong
    (page,) = answers
    assert "victim" not in page and "mallory" not in page
    assert not {"victim@example.com", "mallory@example.com"} & {e["address"] for e in entries(api)}


def test_unsubscribe_routes_need_no_token_and_v1_still_does(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, headers={"X-Forwarded-For": next(_addresses)}) as c:
        assert c.get(f"/u/{token('free@example.com')}").status_code == 200
        for method in ("GET", "POST", "DELETE"):
            r = c.request(method, "/v1/suppressions", json={"addresses": ["a@example.com"]})
            assert r.status_code == 401, method


def test_a_client_over_the_rate_limit_gets_429_and_others_do_not(server: ApiServer) -> None:
    url = f"/u/{token('limited@example.com')}"
    with (
        httpx.Client(base_url=server.url, headers={"X-Forwarded-For": "203.0.113.9"}) as one,
        httpx.Client(base_url=server.url, headers={"X-Forwarded-For": "203.0.113.10"}) as other,
    ):
        # a full bucket takes 30 requests at once, whatever the time they take
        assert [one.get(url).status_code for _ in range(30)] == [200] * 30
        # it refills at one every 2 s: far fewer than these come back meanwhile
        answers = [one.post(url, data=ONE_CLICK) for _ in range(60)]
        refused = [r for r in answers if r.status_code == 429]
        assert refused and {r.status_code for r in answers} <= {200, 429}
        assert int(refused[0].headers["retry-after"]) >= 1
        assert refused[0].json() == {"detail": "too many requests: try again later"}
        assert other.get(url).status_code == 200  # counted apart


def test_without_a_secret_unsubscribing_is_not_available(tmp_path: Path) -> None:
    srv = ApiServer(tmp_path, "--workers", "0", queue="memory://")
    try:
        with httpx.Client(base_url=srv.url) as c:
            assert c.post(f"/u/{token('x@example.com')}", data=ONE_CLICK).status_code == 404
            assert c.get(f"/u/{token('x@example.com')}").status_code == 404
    finally:
        srv.stop()


# -- /v1/suppressions ------------------------------------------------------------------


def test_post_addresses_then_list_filter_and_page(api: httpx.Client) -> None:
    r = api.post(
        "/v1/suppressions",
        json={"addresses": ["p1@page.example", "@Page-Domain.EXAMPLE"], "list": "promo",
              "reason": "bounced", "expires": "30d"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 2}
    r = api.post(
        "/v1/suppressions",
        json={"entries": [
            {"address": "p2@page.example"},
            {"address": "p3@page.example", "list": "promo", "reason": "complained",
             "source": "fbl", "expires": "2999-01-01"},
        ]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    promo = {e["address"]: e for e in entries(api, list="promo")}
    assert {"p1@page.example", "@page-domain.example", "p3@page.example"} <= set(promo)
    assert promo["@page-domain.example"]["reason"] == "bounced"
    assert promo["@page-domain.example"]["expires_at"] is not None
    assert promo["p3@page.example"]["source"] == "fbl"
    assert promo["p3@page.example"]["expires_at"].startswith("2999-01-01T00:00:00")
    glob = {e["address"]: e for e in entries(api, **{"global": "true"})}
    assert glob["p2@page.example"]["list"] is None and glob["p2@page.example"]["reason"] == "manual"
    assert {e["address"] for e in entries(api, reason="complained")} >= {"p3@page.example"}
    # paging: every entry once, in order, whatever the page size
    everything = entries(api)
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
        page = api.get("/v1/suppressions", params=params).json()
        seen += page["entries"]
        after = page["next"]
        if after is None:
            break
    assert seen == everything


def test_delete_by_query_and_by_body(api: httpx.Client) -> None:
    api.post("/v1/suppressions", json={"addresses": ["d1@del.example", "d2@del.example"]})
    api.post("/v1/suppressions", json={"addresses": ["d1@del.example"], "list": "news"})
    r = api.delete("/v1/suppressions", params={"address": ["D1@DEL.example"], "list": "news"})
    assert r.status_code == 200 and r.json() == {"removed": 1}
    left = {(e["address"], e["list"]) for e in entries(api) if e["address"].endswith("del.example")}
    assert left == {("d1@del.example", None), ("d2@del.example", None)}
    r = api.request(
        "DELETE", "/v1/suppressions", json={"addresses": ["d1@del.example", "d2@del.example"]}
    )
    assert r.status_code == 200 and r.json() == {"removed": 2}
    assert not [e for e in entries(api) if e["address"].endswith("del.example")]


def test_every_bad_address_is_named_and_nothing_is_added(api: httpx.Client) -> None:
    r = api.post(
        "/v1/suppressions",
        json={"addresses": ["ok@bad.example", "no-at-sign", "also@", "@not a domain"]},
    )
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "addresses"), (2, "addresses"), (3, "addresses")
    ]  # fmt: skip
    assert "ok@bad.example" not in {e["address"] for e in entries(api)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"addresses": ["a@x.example"], "entries": [{"address": "b@x.example"}]}, "body"),
        ({"entries": [{"address": "a@x.example"}], "reason": "bounced"}, "reason"),
        ({"addresses": ["a@x.example"], "expires": "yesterday"}, "expires"),
        ({"addresses": ["a@x.example"], "expires": "2001-01-01"}, "expires"),
        ({"addresses": ["a@x.example"], "reason": "annoyed"}, "reason"),
        ({"addresses": ["a@x.example"], "list": "no spaces"}, "list"),
        ({"addresses": ["a@x.example"], "colour": "red"}, "colour"),
    ],
)
def test_invalid_requests_get_field_level_errors(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    r = api.post("/v1/suppressions", json=body)
    assert r.status_code == 422, r.text
    assert field in {e["field"] for e in r.json()["errors"]}


def test_suppressions_take_json_only(api: httpx.Client) -> None:
    r = api.post("/v1/suppressions", content=b"addresses=a@x.example",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 415
    r = api.request("DELETE", "/v1/suppressions", content=b"a@x.example",
                    headers={"Content-Type": "text/plain"})  # fmt: skip
    assert r.status_code == 415


def test_a_bad_cursor_is_422(api: httpx.Client) -> None:
    r = api.get("/v1/suppressions", params={"after": "not-a-cursor"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "after"


# -- the pieces, without a server ------------------------------------------------------


def test_buckets_allow_a_burst_then_the_rate() -> None:
    limits = ClientLimits(rate=0.5, burst=3)
    assert [limits.take("192.0.2.1", now=100.0) for _ in range(3)] == [0.0] * 3
    assert limits.take("192.0.2.1", now=100.0) == pytest.approx(2.0)  # 1 token / 0.5 a second
    assert limits.take("192.0.2.2", now=100.0) == 0.0  # another client
    assert limits.take("192.0.2.1", now=102.0) == 0.0  # refilled one
    assert limits.take("192.0.2.1", now=102.0) > 0
    assert ClientLimits.retry_after(0.2) == "1" and ClientLimits.retry_after(2.5) == "3"


def test_buckets_are_bounded_and_ipv6_counts_by_64() -> None:
    limits = ClientLimits(rate=1, burst=1, max_clients=100)
    for i in range(1000):
        limits.take(f"10.0.{i // 256}.{i % 256}", now=0.0)
    assert len(limits) == 100
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    limits = ClientLimits(rate=1, burst=1)
    assert limits.take("2001:db8::1", now=0.0) == 0.0
    assert limits.take("2001:db8::ffff", now=0.0) > 0  # the same /64


def test_cursors_and_expiries() -> None:
    assert read_cursor(cursor(("a@b.example", "news"))) == ("a@b.example", "news")
    for bad in ("", "!!", "WyJhIl0", "WyJhIiwgMV0"):  # the last two: ["a"], ["a", 1]
        with pytest.raises(ValueError):
            read_cursor(bad)
    assert expiry("30d", 1000.0) == 1000.0 + 30 * 86400
    assert expiry("2030-01-01", 0.0) == 1893456000.0
    for bad in ("0s", "1999-12-31", "soon"):
        with pytest.raises(ValueError):
            expiry(bad, 1e9)


def test_tokens_made_here_read_back() -> None:
    assert read_token(SECRETS, token("Ann@Example.com", "news", "c1")).address == "ann@example.com"
