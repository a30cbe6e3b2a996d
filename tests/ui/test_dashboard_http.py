"""The dashboard's sessions and headers over plain HTTP (httpx against ``mailspool
serve``): signing in, the cookie's flags, CSRF tokens refused and taken, signing out,
the security headers. No browser needed."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import TOKEN, ApiServer

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    srv = ApiServer(tmp_path_factory.mktemp("ui-http"), "--workers", "0")
    yield srv
    srv.stop()


def login_form(client: httpx.Client) -> str:
    """Open the login form (its session cookie kept by the client); its CSRF token."""
    page = client.get("/ui/login")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found
    return found.group(1)


def signed_in(server: ApiServer, **headers: str) -> tuple[httpx.Client, str]:
    """A client signed in, and the CSRF token of its session."""
    client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
    csrf = login_form(client)
    r = client.post("/ui/login", data={"csrf": csrf, "token": TOKEN, "next": "/ui/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    found = META.search(page.text)
    assert found
    return client, found.group(1)


def test_a_page_without_a_session_goes_to_the_login_form(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as anon:
        r = anon.get("/ui/dead-letters?campaign=x")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=%2Fui%2Fdead-letters%3Fcampaign%3Dx"
        assert anon.get("/ui/api/campaigns").status_code == 401


def test_signing_in_rotates_the_session_into_a_strict_http_only_cookie(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        csrf = login_form(client)
        form_cookie = client.cookies["mailspool_session"]
        r = client.post("/ui/login", data={"csrf": csrf, "token": TOKEN})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP, from no proxy
        assert client.cookies["mailspool_session"] != form_cookie  # a new id once signed in
        assert client.get("/ui/api/campaigns").json()["campaigns"] == []


def test_a_wrong_token_or_a_missing_csrf_token_does_not_sign_in(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        csrf = login_form(client)
        wrong = client.post("/ui/login", data={"csrf": csrf, "token": "x" * 30})
        assert wrong.status_code == 401
        assert "not one this server accepts" in wrong.text
        assert client.post("/ui/login", data={"token": TOKEN}).status_code == 403
        assert client.post("/ui/login", data={"csrf": "forged", "token": TOKEN}).status_code == 403
        assert client.get("/ui/api/campaigns").status_code == 401


def test_a_change_without_the_csrf_token_is_refused(server: ApiServer) -> None:
    client, csrf = signed_in(server)
    with contextlib.closing(client):
        body = {"ids": ["nothing-of-that-id"]}
        assert client.post("/v1/dead-letters/retry", json=body).status_code == 403
        bad = client.post("/v1/dead-letters/retry", json=body, headers={"X-CSRF-Token": "x"})
        assert bad.status_code == 403
        assert bad.json() == {"detail": "missing or invalid CSRF token"}
        ok = client.post("/v1/dead-letters/retry", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json() == {"retry": 0}
        delete = client.request("DELETE", "/v1/suppressions", json={"addresses": ["a@b.example"]})
        assert delete.status_code == 403
        assert client.post("/ui/logout").status_code == 403  # signing out is a change too
    # a bearer token needs none: a browser never sends one by itself
    with server.client() as api:
        assert api.post("/v1/dead-letters/retry", json=body).json() == {"retry": 0}


def test_signing_out_ends_the_session_on_the_server(server: ApiServer) -> None:
    client, csrf = signed_in(server)
    with contextlib.closing(client):
        cookie = client.cookies["mailspool_session"]
        r = client.post("/ui/logout", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        assert 'mailspool_session=""' in r.headers["set-cookie"]
    with httpx.Client(base_url=server.url, cookies={"mailspool_session": cookie}) as replay:
        assert replay.get("/ui/api/campaigns").status_code == 401
        assert replay.get("/ui/").status_code == 303


def test_the_cookie_is_secure_behind_a_tls_proxy(server: ApiServer) -> None:
    # the proxy is on 127.0.0.1, which FORWARDED_ALLOW_IPS trusts by default; httpx keeps
    # a Secure cookie from plain HTTP to itself, so it is sent by hand here
    proxied = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, headers=proxied) as client:
        form = client.get("/ui/login")
        assert "Secure" in form.headers["set-cookie"]
        found = CSRF.search(form.text)
        assert found
        session = form.headers["set-cookie"].split(";")[0]
        r = client.post(
            "/ui/login",
            data={"csrf": found.group(1), "token": TOKEN},
            headers={"Cookie": session},
        )
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"]


def test_every_dashboard_answer_has_its_security_headers(server: ApiServer) -> None:
    client, _ = signed_in(server)
    with contextlib.closing(client):
        for path in ("/ui/", "/ui/messages", "/ui/api/campaigns", "/ui/login"):
            r = client.get(path)
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["cache-control"] == "no-store", path
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "http" not in csp, path
        static = client.get("/ui/static/common.js")
        assert static.status_code == 200 and static.headers["cache-control"] == "no-cache"
        assert "content-security-policy" not in client.get("/healthz").headers


def test_the_pages_load_nothing_from_elsewhere() -> None:
    folder = Path(__file__).resolve().parents[2] / "src" / "mailspool" / "api" / "dashboard"
    for path in [*folder.glob("templates/*.html"), *folder.glob("static/*")]:
        text = path.read_text()
        assert "://" not in text.replace("http://www.w3.org/2000/svg", ""), path
        assert "<script>" not in text and " style=" not in text, path
