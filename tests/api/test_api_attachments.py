"""Attachments over the HTTP API, against ``mailspool serve`` run as a user runs it: base64
in a JSON body (per message, or beside a batch's messages) and files of a multipart form,
delivered to a real SMTP server as MIME parts, stored once in the job store, and refused
past their size limits (413) or when their name, type or base64 is wrong (422)."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.message.dkim_keys import generate_key
from mailspool.testing import RecordingSMTPServer
from tests.support.api import PDF, PNG, ApiServer, attachment, delivered_to, message, wait_final
from tests.support.dkim import dkimpy_results


@pytest.fixture(scope="module")
def smtpd_att() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, smtpd_att: RecordingSMTPServer
) -> Iterator[ApiServer]:
    srv = ApiServer(
        tmp_path_factory.mktemp("att"), "--smtp", f"smtp://127.0.0.1:{smtpd_att.port}",
        "--workers", "1",
    )  # fmt: skip
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def delivered(api: httpx.Client, smtpd: RecordingSMTPServer, job_id: str, to: str) -> EmailMessage:
    """The message of a job once sent, as the SMTP server received it, parsed."""
    assert wait_final(api, job_id)["state"] == "sent"
    (got,) = delivered_to(smtpd, to)
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)  # what the default policy makes
    return msg


def files_of(msg: EmailMessage) -> list[tuple[str | None, str, str, bytes]]:
    """Each attachment: file name, content type, transfer encoding, content."""
    return [
        (
            p.get_filename(),
            p.get_content_type(),
            p["Content-Transfer-Encoding"],
            p.get_payload(decode=True),
        )
        for p in msg.iter_attachments()
    ]


# -- delivered as MIME parts -----------------------------------------------------------------


def test_a_base64_attachment_is_delivered_as_a_mime_part(
    api: httpx.Client, smtpd_att: RecordingSMTPServer
) -> None:
    body = message(
        "json@example.net",
        text="Your invoice.",
        attachments=[
            attachment("Invoice 7.pdf", PDF, "application/pdf"),
            attachment("résumé.png", PNG),  # no type: guessed from the name
            attachment("data.weird-ext", b"\x00\x01raw"),  # unknown: octet-stream
        ],
    )
    r = api.post("/v1/messages", json=body)
    assert r.status_code == 202, r.text
    msg = delivered(api, smtpd_att, r.json()["id"], "json@example.net")
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content().strip() == "Your invoice."
    assert files_of(msg) == [
        ("Invoice 7.pdf", "application/pdf", "base64", PDF),
        ("résumé.png", "image/png", "base64", PNG),
        ("data.weird-ext", "application/octet-stream", "base64", b"\x00\x01raw"),
    ]


def test_form_files_go_to_every_message_after_its_own(
    api: httpx.Client, smtpd_att: RecordingSMTPServer
) -> None:
    batch = {
        "messages": [
            message("form1@example.net", attachments=[attachment("own.txt", b"just mine\n")]),
            message("form2@example.net"),
        ]
    }
    r = api.post(
        "/v1/messages",
        data={"message": json.dumps(batch)},
        files=[
            ("attachment", ("report.csv", b"a,b\r\n1,2\r\n", "text/csv")),
            ("attachment", ("logo.png", PNG, "image/png")),
        ],
    )
    assert r.status_code == 202, r.text
    first, second = r.json()["ids"]
    shared = [
        ("report.csv", "text/csv", "base64", b"a,b\r\n1,2\r\n"),
        ("logo.png", "image/png", "base64", PNG),
    ]
    own = ("own.txt", "text/plain", "base64", b"just mine\n")
    assert files_of(delivered(api, smtpd_att, first, "form1@example.net")) == [own, *shared]
    assert files_of(delivered(api, smtpd_att, second, "form2@example.net")) == shared


def test_the_message_part_may_be_a_json_file(
    api: httpx.Client, smtpd_att: RecordingSMTPServer
) -> None:
    """As ``curl -F 'message=@msg.json;type=application/json' -F attachment=@a.pdf``."""
    msg = json.dumps(message("jsonfile@example.net")).encode()
    r = api.post(
        "/v1/messages",
        files=[
            ("message", ("msg.json", msg, "application/json")),
            ("attachment", ("a.pdf", PDF, "application/octet-stream")),  # curl's "unknown"
        ],
    )
    assert r.status_code == 202, r.text
    got = delivered(api, smtpd_att, r.json()["id"], "jsonfile@example.net")
    assert files_of(got) == [("a.pdf", "application/pdf", "base64", PDF)]


def test_a_template_message_takes_attachments(
    api: httpx.Client, smtpd_att: RecordingSMTPServer
) -> None:
    tpl = "From: app@example.com\nTo: {{ to }}\nSubject: Hi {{ name }}\n\nHello {{ name }}.\n"
    assert api.put("/v1/templates/with-files", json={"text": tpl}).status_code == 201
    body = {
        "template": "with-files",
        "variables": {"to": "tpl@example.net", "name": "Ann"},
        "attachments": [attachment("terms.pdf", PDF)],
    }
    r = api.post("/v1/messages", json=body)
    assert r.status_code == 202, r.text
    got = delivered(api, smtpd_att, r.json()["id"], "tpl@example.net")
    assert files_of(got) == [("terms.pdf", "application/pdf", "base64", PDF)]


def test_a_signed_message_with_files_verifies_as_delivered(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    """The API signs the message with its files wrapped in as the worker wraps them."""
    specs, records = [], []
    for selector, algorithm in (("rsa1", "rsa"), ("ed1", "ed25519")):
        path, record = generate_key("example.com", selector, algorithm, out_dir=tmp_path)
        specs += ["--dkim", f"example.com:{selector}:{path}"]
        records.append(record)
    srv = ApiServer(tmp_path, "--smtp", f"smtp://127.0.0.1:{smtpd.port}", *specs)
    try:
        with srv.client() as c:
            body = message("signed@example.net", attachments=[attachment("a.pdf", PDF)])
            r = c.post(
                "/v1/messages",
                data={"message": json.dumps(body)},
                files=[("attachment", ("b.png", PNG, "image/png"))],
            )
            assert r.status_code == 202, r.text
            got = delivered(c, smtpd, r.json()["id"], "signed@example.net")
    finally:
        srv.stop()
    assert [f[0] for f in files_of(got)] == ["a.pdf", "b.png"]
    (raw,) = delivered_to(smtpd, "signed@example.net")
    assert dkimpy_results(raw.data, records) == ["pass", "pass"]


# -- refused: names, types, base64, forms ----------------------------------------------------


def errors(r: httpx.Response) -> list[tuple[int | None, str]]:
    assert r.status_code == 422, r.text
    return [(e["index"], e["field"]) for e in r.json()["errors"]]


def test_a_type_that_disagrees_with_the_name_is_422_naming_the_attachment(
    api: httpx.Client,
) -> None:
    body = message(attachments=[attachment("invoice.pdf", PDF, "image/png")])
    r = api.post("/v1/messages", json=body)
    assert errors(r) == [(0, "attachments.0.content_type")]
    assert "invoice.pdf" in r.json()["errors"][0]["reason"]
    r = api.post(
        "/v1/messages",
        data={"message": json.dumps(message())},
        files=[("attachment", ("invoice.pdf", PDF, "image/png"))],
    )
    assert errors(r) == [(None, "attachment.0.content_type")]


def test_bad_base64_is_422_naming_the_field(api: httpx.Client) -> None:
    batch = {
        "messages": [
            message(attachments=[attachment("ok.txt", b"fine")]),
            message(attachments=[{"filename": "a.txt", "content_base64": "not*base64"}]),
            message(attachments=[{"filename": "b.txt", "content_base64": "QUJD="}]),  # padding
        ],
        "attachments": [{"filename": "c.txt", "content_base64": "QUJD\u00e9"}],
    }
    r = api.post("/v1/messages", json=batch)
    assert errors(r) == [
        (None, "attachments.0.content_base64"),  # the batch's (index null, listed first)
        (1, "attachments.0.content_base64"),
        (2, "attachments.0.content_base64"),
    ]


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "C:\\Users\\a.pdf", "a\r\nBcc: evil@example.net\r\n.pdf", ".."]
)
def test_a_file_name_that_is_a_path_or_writes_headers_is_422(
    api: httpx.Client, smtpd_att: RecordingSMTPServer, name: str
) -> None:
    r = api.post("/v1/messages", json=message(attachments=[attachment(name, b"x")]))
    assert errors(r) == [(0, "attachments.0.filename")]
    assert not delivered_to(smtpd_att, "evil@example.net")


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ([("attachment", ("a.pdf", PDF, "application/pdf"))], "message"),  # no message part
        ([("message", (None, b"{}")), ("files", ("a.pdf", PDF, "application/pdf"))], "files"),
        ([("message", (None, json.dumps(message()).encode())), ("attachment", (None, b"x"))],
         "attachment.0.filename"),  # a file part without a file name
    ],
)  # fmt: skip
def test_a_form_without_its_message_part_or_with_unknown_parts_is_422(
    api: httpx.Client, parts: list[Any], field: str
) -> None:
    r = api.post("/v1/messages", files=parts)
    assert errors(r) == [(None, field)]


def test_the_default_limit_per_file_is_10_mib(api: httpx.Client) -> None:
    r = api.post(
        "/v1/messages",
        data={"message": json.dumps(message())},
        files=[("attachment", ("big.iso", b"\0" * (10 * 1024 * 1024 + 1), None))],
    )
    assert r.status_code == 413, r.text
    (e,) = r.json()["errors"]
    assert "over the limit of 10485760 per file" in e["reason"]


# -- the OpenAPI document -------------------------------------------------------------------


def test_the_openapi_document_describes_both_forms(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    post = doc["paths"]["/v1/messages"]["post"]
    content = post["requestBody"]["content"]
    form = content["multipart/form-data"]
    assert set(form["schema"]["properties"]) == {"message", "attachment"}
    assert form["encoding"]["message"]["contentType"] == "application/json"
    schemas = doc["components"]["schemas"]
    assert set(schemas["AttachmentIn"]["properties"]) == {
        "filename",
        "content_type",
        "content_base64",
    }
    assert "attachments" in schemas["MessageIn"]["properties"]
    assert "attachments" in schemas["BatchIn"]["properties"]
    assert post["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TooLargeBody"
    )
