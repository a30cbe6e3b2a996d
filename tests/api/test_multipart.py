"""multipart/form-data as api/multipart.py reads it: byte-exact file content, file names
quoted or in RFC 2231, and a clear BadForm for a body that is not a form."""

from __future__ import annotations

import httpx
import pytest

from mailspool.api.multipart import BadForm, Part, parse_form

CT = "multipart/form-data; boundary=XyZ"


def test_parts_as_clients_write_them() -> None:
    # content that looks like a boundary without being one, CR and LF, and every byte
    data = b"\r\n--XyZ-not-quite\r\n--Xy\x00" + bytes(range(256))
    request = httpx.Request(
        "POST",
        "http://x/",
        data={"message": '{"to": "a@example.com"}'},
        files=[("attachment", ("résumé.pdf", data, "application/pdf"))],
    )
    body = request.read()
    parts = parse_form(request.headers["content-type"], body, max_parts=10)
    assert parts == [
        Part("message", None, None, b'{"to": "a@example.com"}'),
        Part("attachment", "résumé.pdf", "application/pdf", data),
    ]


def test_preamble_epilogue_padding_and_rfc_2231_names() -> None:
    body = (
        b"ignored preamble\r\n--XyZ  \r\n"  # transport padding after the boundary
        b"Content-Disposition: form-data; name=attachment;"
        b" filename*=utf-8''na%C3%AFve%20file.txt\r\n\r\n"
        b"hello\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="message"\r\n\r\n'
        b"{}\r\n--XyZ--\r\nignored epilogue"
    )
    parts = parse_form(CT, body, max_parts=10)
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("attachment", "naïve file.txt", b"hello"),
        ("message", None, b"{}"),
    ]


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("multipart/form-data", b"", "needs a boundary"),
        (f"multipart/form-data; boundary={'b' * 71}", b"", "needs a boundary"),
        (CT, b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx", "closing boundary"),
        (CT, b"--XyZ\nContent-Disposition: form-data; name=a\n\nx\n--XyZ--\n", "CRLF"),
        (CT, b"--XyZ\r\n\r\nx\r\n--XyZ--\r\n", "Content-Disposition: form-data"),
        (CT, b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n", "a name"),
        (CT, b"--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--", "form-data"),
        (CT, b"--XyZ\r\nContent-Disposition: form-data; name=a\r\nx\r\n--XyZ--\r\n", "blank line"),
        (CT, b"--XyZ\r\nContent-Disposition: form-data; name=\xff\r\n\r\nx\r\n--XyZ--", "UTF-8"),
        (CT, b"--XyZ junk\r\nContent-Disposition: form-data; name=a\r\n\r\n--XyZ--", "CRLF"),
        (
            CT,
            b"--XyZ\r\nContent-Disposition: form-data; name=a; filename*=utf-8''%FF\r\n\r\n"
            b"x\r\n--XyZ--\r\n",
            "malformed Content-Disposition",
        ),
    ],
)
def test_what_is_not_a_form_is_refused_saying_why(
    content_type: str, body: bytes, reason: str
) -> None:
    with pytest.raises(BadForm, match=reason):
        parse_form(content_type, body, max_parts=10)


def test_the_number_of_parts_is_capped() -> None:
    part = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n"
    assert len(parse_form(CT, part * 3 + b"--XyZ--\r\n", max_parts=3)) == 3
    with pytest.raises(BadForm, match="more than 3 parts"):
        parse_form(CT, part * 4 + b"--XyZ--\r\n", max_parts=3)
