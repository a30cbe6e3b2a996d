"""Hostile requests to ``mailspool serve`` (a subprocess, as a user runs it): what a token
holder may not do, and limits applied before any costly work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.api import ApiServer, delivered_to, message, wait_final


@pytest.fixture(scope="module")
def smtpd_hostile() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, smtpd_hostile: RecordingSMTPServer
) -> Iterator[ApiServer]:
    srv = ApiServer(
        tmp_path_factory.mktemp("hostile"), "--smtp", f"smtp://127.0.0.1:{smtpd_hostile.port}",
        "--from", "News <news@example.org>", env={"MAILSPOOL_ALLOWED_FROM": ""},
    )  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture
def api(hostile: ApiServer) -> Iterator[httpx.Client]:
    with hostile.client() as c:
        yield c


def post_raw(api: httpx.Client, body: bytes, ctype: str = "application/json") -> httpx.Response:
    return api.post("/v1/messages", content=body, headers={"Content-Type": ctype})


def fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    return [e["field"] for e in r.json()["errors"]]


def test_only_the_domain_of_from_is_allowed_by_default(
    api: httpx.Client, smtpd_hostile: RecordingSMTPServer
) -> None:
    r = api.post("/v1/messages", json=message("ok@example.net", **{"from": "a@example.org"}))
    assert r.status_code == 202, r.text
    assert wait_final(api, r.json()["id"])["state"] == "sent"
    r = api.post("/v1/messages", json=message("no@example.net", **{"from": "a@evil.example"}))
    assert fields(r) == ["from"]
    assert "evil.example is not allowed" in r.json()["errors"][0]["reason"]
    # a template's From is checked as well
    tpl = "From: x@evil.example\nTo: {{ to }}\nSubject: s\n\nb\n"
    assert api.put("/v1/templates/spoof", json={"text": tpl}).status_code == 201
    r = api.post("/v1/messages", json={"template": "spoof", "variables": {"to": "v@example.net"}})
    assert fields(r) == ["from"]
    assert not delivered_to(smtpd_hostile, "no@example.net")
    assert not delivered_to(smtpd_hostile, "v@example.net")


def test_allowed_from_adds_domains_and_star_allows_any(tmp_path: Path) -> None:
    srv = ApiServer(
        tmp_path, "--workers", "0", "--allowed-from", "Example.COM", "--allowed-from", "@b.example",
        env={"MAILSPOOL_ALLOWED_FROM": ""},
    )  # fmt: skip
    try:
        with srv.client() as c:
            for sender, code in [
                ("a@example.com", 202),
                ("a@b.example", 202),
                ("a@c.example", 422),
            ]:
                r = c.post("/v1/messages", json=message(**{"from": sender}))
                assert r.status_code == code, (sender, r.text)
    finally:
        srv.stop()
    srv = ApiServer(tmp_path, "--workers", "0", env={"MAILSPOOL_ALLOWED_FROM": "*"})
    try:
        with srv.client() as c:
            r = c.post("/v1/messages", json=message(**{"from": "a@anything.example"}))
            assert r.status_code == 202, r.text
    finally:
        srv.stop()


def test_a_header_name_cannot_write_header_lines(
    api: httpx.Client, smtpd_hostile: RecordingSMTPServer
) -> None:
    for name in ["X-Foo: bar\r\nBcc: x@evil.example\r\nX-A", "X-Foo\nX-A", "X-A B"]:
        r = api.post("/v1/messages", json=message(**{"from": "a@example.org"}, headers={name: "v"}))
        assert fields(r) == ["headers"]
    assert not delivered_to(smtpd_hostile, "x@evil.example")


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("text/plain", json.dumps(message()).encode()),
        ("application/x-www-form-urlencoded", b"to=a%40example.org&text=hi"),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nhi\r\n--x--\r\n"),
        ("", json.dumps(message()).encode()),
    ],
)
def test_a_body_that_is_not_declared_json_is_415(
    api: httpx.Client, ctype: str, body: bytes
) -> None:
    r = post_raw(api, body, ctype)
    if ctype.startswith("multipart/form-data"):
        # messages may come with files (tests/api/test_api_attachments.py): a form is
        # read, and this one has no message part
        assert fields(r) == ["body"]
    else:
        assert r.status_code == 415, r.text
    r = api.put("/v1/templates/t", content=b'{"text": "x"}', headers={"Content-Type": ctype})
    assert r.status_code == 415


def test_a_body_that_is_not_utf8_is_400(api: httpx.Client) -> None:
    r = post_raw(api, b'{"to": "\xff\xfe"}')
    assert r.status_code == 400 and "UTF-8" in r.json()["detail"]
    r = api.put(
        "/v1/templates/t", content=b'{"text": "\xff"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400


def test_too_many_recipients_are_refused_before_any_is_validated(api: httpx.Client) -> None:
    many = [f"r{i}@example.net" for i in range(100_000)]
    r = api.post("/v1/messages", json=message(many, **{"from": "a@example.org"}))
    assert fields(r) == ["to"]
    assert "more than 100" in r.json()["errors"][0]["reason"]
    r = api.post("/v1/messages", json=message(", ".join(many), **{"from": "a@example.org"}))
    assert fields(r) == ["to"]
    assert api.get("/healthz").status_code == 200


def test_recipients_differing_in_case_get_one_rcpt(
    api: httpx.Client, smtpd_hostile: RecordingSMTPServer
) -> None:
    to = ["Case@Example.net", "case@example.net", "CASE@EXAMPLE.NET"]
    r = api.post(
        "/v1/messages", json=message(to, cc="case@EXAMPLE.net", **{"from": "a@example.org"})
    )
    assert r.status_code == 202, r.text
    assert wait_final(api, r.json()["id"])["state"] == "sent"
    (got,) = [
        m
        for m in smtpd_hostile.messages
        if any(a.lower() == "case@example.net" for a in m.recipients)
    ]
    assert [a.lower() for a in got.recipients] == ["case@example.net"]


LONE = "\ud800"  # json.dumps writes it as the escape \ud800, which JSON allows


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"subject": LONE}, "subject"),
        ({"text": "x" + LONE}, "text"),
        ({"html": f"<p>{LONE}</p>"}, "html"),
        ({"headers": {"X-A": LONE}}, "headers.X-A"),
    ],
)
def test_a_lone_surrogate_names_its_field(
    api: httpx.Client, extra: dict[str, object], field: str
) -> None:
    body = {"from": "a@example.org", "to": "b@example.net", "text": "t", **extra}
    assert fields(post_raw(api, json.dumps(body).encode())) == [field]


def test_a_lone_surrogate_in_a_template_variable_names_the_field_it_lands_in(
    api: httpx.Client,
) -> None:
    tpl = "From: a@example.org\nTo: {{ to }}\nSubject: Hi {{ name }}\n\nb\n"
    assert api.put("/v1/templates/sur", json={"text": tpl}).status_code == 201
    body = {"template": "sur", "variables": {"to": "b@example.net", "name": LONE}}
    assert fields(post_raw(api, json.dumps(body).encode())) == ["subject"]
