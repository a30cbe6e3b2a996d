"""DKIM signing: every signature checked by dkimpy and, for RSA, independently by Perl's
Mail::DKIM, both fed the DNS records that keygen printed (no DNS here)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import example, given
from hypothesis import strategies as st

from mailspool.message.compose import attachment_part, compose, wrap_mixed
from mailspool.message.dkim import OVERSIGNED, SIGNED_HEADERS, Signer, canonical_body, parse
from mailspool.message.dkim_keys import DKIMKey, generate_key
from mailspool.message.render import Rendered
from mailspool.models import AttachmentRef
from tests.support.dkim import dkimpy_results, perl_results, signature_tags

T0 = 1_700_000_000
MESSAGE = (
    b"From: News <news@example.com>\r\n"
    b"To: Ann <ann@example.org>\r\n"
    b"Subject: Our October letter\r\n"
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"Message-ID: <0123456789abcdef@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Mailer: mailspool\r\n"
    b"\r\n"
    b"Hello Ann,\r\n\r\nthe news of the month.  With two spaces, a tab\there,\r\n"
    b"and a space at the end \r\n\r\n\r\n"
)


class Keys:
    """Keys made by generate_key, and the records it printed."""

    def __init__(self, out: Path) -> None:
        self.records: list[str] = []
        self.rsa = self._make(out, "example.com", "rsa2023", "rsa")
        self.ed = self._make(out, "example.com", "ed2023", "ed25519")
        self.other = self._make(out, "other.example", "s1", "rsa")
        self.idn = self._make(out, "bücher.example", "s1", "ed25519")

    def _make(self, out: Path, domain: str, selector: str, algorithm: str) -> DKIMKey:
        path, record = generate_key(domain, selector, algorithm, out_dir=out)
        self.records.append(record)
        return DKIMKey.load(domain, selector, path)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("dkim"))


def signed(keys: list[DKIMKey], message: bytes = MESSAGE, **kw: int) -> bytes:
    header = Signer(keys, **kw).sign(message, timestamp=T0)
    assert header, "no signature"
    return header + message


def perl_verdicts(message: bytes, keys: Keys) -> dict[str, tuple[str, str]]:
    return {r.algorithm: (r.result, r.detail) for r in perl_results(message, keys.records)}


def assert_perl_ed25519_not_failed(verdict: tuple[str, str]) -> None:
    # Debian's Mail::DKIM does not know Ed25519 and says so; a newer one must pass it
    assert verdict[0] == "pass" or verdict == (
        "invalid",
        "invalid (unsupported algorithm ed25519-sha256)",
    ), verdict


def test_rsa_signature_verifies(keys: Keys) -> None:
    message = signed([keys.rsa])
    assert dkimpy_results(message, keys.records) == ["pass"]
    assert perl_verdicts(message, keys) == {"rsa-sha256": ("pass", "pass")}


def test_ed25519_signature_verifies(keys: Keys) -> None:
    message = signed([keys.ed])
    assert dkimpy_results(message, keys.records) == ["pass"]
    assert signature_tags(message)[0]["a"] == "ed25519-sha256"
    assert_perl_ed25519_not_failed(perl_verdicts(message, keys)["ed25519-sha256"])


def test_an_rsa_and_an_ed25519_key_of_one_domain_give_two_signatures(keys: Keys) -> None:
    message = signed([keys.rsa, keys.ed, keys.other])
    tags = signature_tags(message)
    assert [(t["a"], t["d"], t["s"]) for t in tags] == [
        ("rsa-sha256", "example.com", "rsa2023"),
        ("ed25519-sha256", "example.com", "ed2023"),
    ]
    assert dkimpy_results(message, keys.records) == ["pass", "pass"]
    verdicts = perl_verdicts(message, keys)
    assert verdicts["rsa-sha256"] == ("pass", "pass")
    assert_perl_ed25519_not_failed(verdicts["ed25519-sha256"])


def test_a_key_for_another_domain_does_not_sign(keys: Keys) -> None:
    signer = Signer([keys.other])
    assert signer.sign(MESSAGE) == b""
    assert not signer.has_key_for("example.com")
    assert signer.has_key_for("OTHER.example")
    # a subdomain is another domain too (the key must be the From domain's own)
    assert signer.sign(MESSAGE.replace(b"news@example.com", b"news@mail.other.example")) == b""
    assert signer.sign(MESSAGE.replace(b"news@example.com", b"news@OTHER.Example")) != b""


def test_the_from_domain_is_compared_without_case_and_as_idna(keys: Keys) -> None:
    upper = MESSAGE.replace(b"news@example.com", b"News@EXAMPLE.COM")
    assert dkimpy_results(signed([keys.rsa], upper), keys.records) == ["pass"]
    for sender in ("news@bücher.example", "news@xn--bcher-kva.example", "news@BÜCHER.example"):
        message = MESSAGE.replace(b"news@example.com", sender.encode())
        result = signed([keys.idn, keys.rsa], message)
        assert [t["d"] for t in signature_tags(result)] == ["xn--bcher-kva.example"]
        assert dkimpy_results(result, keys.records) == ["pass"]
    assert Signer([keys.idn]).has_key_for("Bücher.example")


def test_a_tampered_body_fails_both_verifiers(keys: Keys) -> None:
    message = signed([keys.rsa, keys.ed]).replace(b"news of the month", b"news of the week")
    assert [
        r.startswith("error: body hash mismatch") for r in dkimpy_results(message, keys.records)
    ] == [True, True]
    assert perl_verdicts(message, keys)["rsa-sha256"] == ("fail", "fail (body has been altered)")


def test_a_tampered_subject_fails_both_verifiers(keys: Keys) -> None:
    message = signed([keys.rsa, keys.ed]).replace(b"Our October letter", b"Our November letter")
    assert dkimpy_results(message, keys.records) == ["fail", "fail"]
    assert perl_verdicts(message, keys)["rsa-sha256"] == ("fail", "fail (message has been altered)")


def test_whitespace_changes_in_transit_still_verify(keys: Keys) -> None:
    # what relaxed/relaxed is for: a relay refolding a header or trimming line ends
    message = signed([keys.rsa, keys.ed])
    message = message.replace(b"To: Ann <ann@example.org>", b"To:   Ann\r\n\t<ann@example.org>")
    message = message.replace(b"at the end \r\n", b"at the end\r\n")
    assert dkimpy_results(message, keys.records) == ["pass", "pass"]
    assert perl_verdicts(message, keys)["rsa-sha256"] == ("pass", "pass")


@pytest.mark.parametrize("where", ["top", "after the signed headers"])
def test_a_second_from_added_after_signing_fails(keys: Keys, where: str) -> None:
    message = signed([keys.rsa, keys.ed])
    evil = b"From: Bank <security@example.com>\r\n"
    if where == "top":
        forged = evil + message
    else:
        head, _, body = message.partition(b"\r\n\r\n")
        forged = head + b"\r\n" + evil.rstrip(b"\r\n") + b"\r\n\r\n" + body
    assert dkimpy_results(message, keys.records) == ["pass", "pass"]
    assert dkimpy_results(forged, keys.records) == ["fail", "fail"]
    assert perl_verdicts(forged, keys)["rsa-sha256"][0] == "fail"


def test_non_ascii_subject_multipart_alternative_and_attachments_verify(keys: Keys) -> None:
    rendered = Rendered(
        sender=("Café Zürich", "news@example.com"),
        to=[("Zoë Ünal", "zoe@example.org")],
        cc=[("", "cc@example.org")],
        reply_to=[("", "help@example.com")],
        subject="Grüße aus Zürich: das Menü für Oktober ☕, a subject long enough to be folded",
        headers=[
            ("List-Unsubscribe", "<https://mail.example.com/u/abc.def>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("List-Id", "News <news.example.com>"),
            ("Feedback-ID", "oct:news:mailspool"),
        ],
        text="Grüße!\n\nDas Menü: ☕ und 🥐.\n",
        html="<p>Grüße!</p><p>Das Menü: ☕ und 🥐.</p>",
    )
    data, offset = compose(rendered, "<0123456789abcdef0123456789abcdef@example.com>", T0)
    parts = [
        attachment_part(
            AttachmentRef("a" * 64, "menü.pdf", "application/pdf"), bytes(range(256)) * 40
        ),
        attachment_part(
            AttachmentRef("b" * 64, "notes.txt", "text/plain"), b"plain  text \t\r\n" * 3
        ),
    ]
    final = wrap_mixed(data, offset, parts, "mix-0123456789abcdef")
    assert b"Subject: =?utf-8?" in final and b"multipart/alternative" in final
    message = signed([keys.rsa, keys.ed], final)
    tags = signature_tags(message)[0]
    assert tags["h"].split(":") == [
        "date",
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "feedback-id",
        "message-id",
        "mime-version",
        "content-type",
        "from",
    ]  # fmt: skip (in the message's order, From once more)
    assert dkimpy_results(message, keys.records) == ["pass", "pass"]
    assert perl_verdicts(message, keys)["rsa-sha256"] == ("pass", "pass")
    # an attachment is covered like the rest of the body
    damaged = message.replace(b"cGxhaW4gIHRleHQg", b"cGxhaW4gIHRleHQh")
    assert damaged != message
    assert perl_verdicts(damaged, keys)["rsa-sha256"] == ("fail", "fail (body has been altered)")


def test_signed_headers_and_tags(keys: Keys) -> None:
    message = signed([keys.rsa])
    (tags,) = signature_tags(message)
    present = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]
    assert tags["h"].split(":") == [*present, "from"]  # X-Mailer is not signed
    assert OVERSIGNED == ("from",)
    assert set(present) <= SIGNED_HEADERS
    assert tags["c"] == "relaxed/relaxed" and tags["t"] == str(T0) and tags["d"] == "example.com"
    assert "l" not in tags and "x" not in tags
    (expiring,) = signature_tags(signed([keys.rsa], expire_after=86400))
    assert expiring["x"] == str(T0 + 86400)


def test_the_header_is_folded_crlf_lines_in_front_of_the_message(keys: Keys) -> None:
    header = Signer([keys.rsa, keys.ed]).sign(MESSAGE, timestamp=T0)
    assert header.endswith(b"\r\n") and b"\n" not in header.replace(b"\r\n", b"")
    lines = header.split(b"\r\n")[:-1]
    assert [line for line in lines if not line.startswith(b" ")] == [
        line for line in lines if line.startswith(b"DKIM-Signature: v=1; ")
    ]
    assert len(lines) > 4 and max(len(line) for line in lines) <= 78


def test_signing_is_deterministic_and_survives_pickling(keys: Keys) -> None:
    # the render processes get the signer pickled; RSA PKCS#1 v1.5 and Ed25519 signatures
    # are deterministic, so the same message signs to the same bytes there
    signer = Signer([keys.rsa, keys.ed])
    copy = pickle.loads(pickle.dumps(signer))
    assert copy.sign(MESSAGE, timestamp=T0) == signer.sign(MESSAGE, timestamp=T0)
    assert [k.path for k in copy.keys] == [keys.rsa.path, keys.ed.path]


def test_messages_that_cannot_be_signed(keys: Keys) -> None:
    signer = Signer([keys.rsa])
    no_from = MESSAGE.replace(b"From: News <news@example.com>\r\n", b"")
    with pytest.raises(ValueError, match="0 From"):
        signer.sign(no_from)
    with pytest.raises(ValueError, match="2 From"):
        signer.sign(b"From: a@example.com\r\n" + MESSAGE)
    two_authors = MESSAGE.replace(b"<news@example.com>", b"<news@example.com>, b@example.com")
    assert signer.sign(two_authors) == b""
    with pytest.raises(ValueError, match="cannot sign"):
        signer.sign(b"From: a@example.com\r\nno colon here\r\n\r\nbody\r\n")
    with pytest.raises(ValueError, match="starts with a continuation line"):
        signer.sign(b" folded: first\r\nFrom: a@example.com\r\n\r\nbody\r\n")


def test_a_message_with_bare_lf_line_ends_signs_as_it_will_be_sent(keys: Keys) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    header = Signer([keys.rsa]).sign(lf, timestamp=T0)
    # on the wire (SMTP) lines end in CRLF
    assert dkimpy_results(header + MESSAGE, keys.records) == ["pass"]


_BODY_PIECES = st.sampled_from(["a", "b", " ", "  ", "\t", "\r\n", "\r", "\n", "=", "é"])


@given(st.lists(_BODY_PIECES, max_size=40).map(lambda p: "".join(p).encode()))
@example(b"base64+text\r\n\r\n\r\n")  # the fast path's own case
@example(b"one space\r\n")
@example(b"-- \r\nsignature \r\n \r\n\r\n")  # one space ending lines: the fast path too
@example(b"x \r\r\n \n \r\n")
@example(b"\r\n\r\n")
def test_the_body_fast_path_canonicalises_as_dkimpy(body: bytes) -> None:
    assert canonical_body(body) == Relaxed.canonicalize_body(body)


_HEADER_PIECES = st.sampled_from(["From: a@example.com", "Subject: x", "\ty", "no colon", ""])


def _parsed(parser: Callable[[bytes], tuple[object, ...]], message: bytes) -> object:
    try:
        return tuple(parser(message))
    except (dkim.MessageFormatError, IndexError):  # IndexError: a continuation line first
        return "refused"


@given(
    st.lists(_HEADER_PIECES, max_size=5),
    st.lists(_BODY_PIECES, max_size=30).map(lambda p: "".join(p).encode()),
    st.sampled_from([b"\r\n", b"\n"]),
)
@example(["", "Subject: x"], b"\r\n\r\nbody", b"\r\n")  # no header field, a blank line later
def test_the_message_fast_path_parses_as_dkimpy(head: list[str], body: bytes, eol: bytes) -> None:
    message = eol.join([h.encode() for h in head] + [b""]) + eol + body
    assert _parsed(parse, message) == _parsed(dkim.rfc822_parse, message)
