"""Property-based: parse_report never raises, on arbitrary bytes or on arbitrary text in
the fields of a DSN, and every address it returns is valid and lower-case."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailspool.inbound import Kind, Report, parse_report
from mailspool.message.addresses import normalize

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEMPLATE = (
    "From: MAILER-DAEMON@mx.example.net\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
    "Diagnostic-Code: {diagnostic}\r\n\r\n"
    "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n\r\n--B--\r\n"
)
FIELD = st.text(max_size=80) | st.sampled_from(
    ["rfc822; A@Example.com", "5.1.1", "smtp; 550 5.1.1 no", "4.2.2", "<a@b.example>", ""]
)


def sound(report: Report) -> None:
    assert isinstance(report.kind, Kind)
    for bounced in report.recipients:
        assert bounced.address == bounced.address.lower()
        assert normalize(bounced.address).lower() == bounced.address
        if bounced.status is not None:
            assert bounced.status[0] in "245"
    if report.message_id is not None:
        assert report.message_id.startswith("<")
        assert report.message_id.endswith(">")
        assert report.message_id.isascii()
        assert report.message_id.isprintable()


@EXAMPLES
@given(data=st.binary(max_size=2000))
def test_any_bytes_give_a_report(data: bytes) -> None:
    sound(parse_report(data))


@EXAMPLES
@given(head=st.binary(max_size=300), tail=st.binary(max_size=300))
def test_bytes_around_a_report_give_a_report(head: bytes, tail: bytes) -> None:
    base = TEMPLATE.format(
        recipient="rfc822; a@example.com", status="5.1.1", diagnostic="x", message_id="<m@x>"
    ).encode()
    sound(parse_report(head + base + tail))
    sound(parse_report(base[: len(head)] + tail))


@EXAMPLES
@given(recipient=FIELD, status=FIELD, diagnostic=FIELD, message_id=FIELD)
def test_any_text_in_the_fields_of_a_dsn_gives_a_report(
    recipient: str, status: str, diagnostic: str, message_id: str
) -> None:
    text = TEMPLATE.format(
        recipient=recipient, status=status, diagnostic=diagnostic, message_id=message_id
    )
    report = parse_report(text.encode("utf-8", "surrogatepass"))
    sound(report)
    assert report.kind in (Kind.DSN, Kind.HEURISTIC, Kind.UNKNOWN)
