"""Unsubscribe tokens and headers: a token names its recipient and list and nothing can
make it name another; secrets rotate and never show; the URL option is checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailspool.errors import ConfigError
from mailspool.message.optout import LIST_NAME, address_key
from mailspool.message.unsubscribe import (
    ENV_SECRET,
    ENV_SECRET_FILE,
    MAX_TOKEN_CHARS,
    BadToken,
    Secrets,
    Unsubscribe,
    check_unsubscribe_url,
    list_unsubscribe_headers,
    make_token,
    read_token,
)

LEAN = settings(max_examples=200, deadline=None)
OLD = "old-secret-" + "o" * 30
NEW = "new-secret-" + "n" * 30
OTHER = "another-one-" + "x" * 30
SECRETS = Secrets([NEW, OLD])

LOCAL = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=30)
DOMAIN = st.from_regex(
    r"[a-zA-Z0-9üéÅ]{1,20}(\.[a-zA-Z0-9]{1,10}){0,2}\.(com|example|DE)", fullmatch=True
)
LIST = st.from_regex(LIST_NAME, fullmatch=True)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
CAMPAIGN = st.text(st.characters(exclude_categories=("Cs",)), max_size=40).filter(
    lambda c: len(c.encode()) <= 100
)
TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ %\n\x00é"


def valid(address: str) -> bool:
    try:
        address_key(address)
    except ValueError:
        return False
    return True


VALID_ADDRESS = ADDRESS.filter(valid)


def refused(token: str, secrets: Secrets = SECRETS) -> bool:
    try:
        read_token(secrets, token)
    except BadToken as exc:
        # no detail, and nothing chained that a traceback or a log would show
        assert str(exc) == "invalid unsubscribe token"
        assert exc.__cause__ is None
        assert exc.__context__ is None or exc.__suppress_context__
        return True
    return False


def test_a_token_names_the_recipient_key_the_list_and_the_campaign() -> None:
    token = make_token(SECRETS, "Ann@Bücher.example", "news", "spring-2025")
    assert read_token(SECRETS, token) == Unsubscribe(
        "ann@xn--bcher-kva.example", "news", "spring-2025"
    )
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")


def test_tokens_are_short() -> None:
    token = make_token(SECRETS, "ann@example.com", "default", "c" * 20)
    assert len(token) == 85
    longest = make_token(
        SECRETS, "a" * 64 + "@" + ("b" * 63 + ".") * 2 + "c" * 57 + ".com", "L" * 64, "c" * 100
    )
    assert len(longest) <= MAX_TOKEN_CHARS
    assert not refused(longest)
    # the header line stays inside RFC 5322's 998 characters with the longest base URL
    base = "https://" + "u" * 292
    [(name, value), _] = list_unsubscribe_headers(check_unsubscribe_url(base), longest)
    assert len(f"{name}: {value}") <= 998


def test_what_cannot_go_into_a_token_is_refused() -> None:
    with pytest.raises(ValueError):
        make_token(SECRETS, "not an address", "news", "c")
    with pytest.raises(ValueError):
        make_token(SECRETS, "ann@example.com", "not a list", "c")
    with pytest.raises(ValueError):
        make_token(SECRETS, "ann@example.com", "news", "é" * 51)


@LEAN
@given(VALID_ADDRESS, LIST, CAMPAIGN)
def test_tokens_round_trip(address: str, list_name: str, campaign: str) -> None:
    token = make_token(SECRETS, address, list_name, campaign)
    assert read_token(SECRETS, token) == Unsubscribe(address_key(address), list_name, campaign)
    assert len(token) <= MAX_TOKEN_CHARS


@LEAN
@given(VALID_ADDRESS, LIST, CAMPAIGN, st.data())
def test_any_one_character_changed_is_refused(
    address: str, list_name: str, campaign: str, data: st.DataObject
) -> None:
    token = make_token(SECRETS, address, list_name, campaign)
    at = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(TOKEN_CHARS))
    assume(char != token[at])
    assert refused(token[:at] + char + token[at + 1 :])


@LEAN
@given(VALID_ADDRESS, LIST, CAMPAIGN, st.data())
def test_truncated_or_extended_tokens_are_refused(
    address: str, list_name: str, campaign: str, data: st.DataObject
) -> None:
    token = make_token(SECRETS, address, list_name, campaign)
    cut = data.draw(st.integers(0, len(token) - 1))
    assert refused(token[:cut])
    assert refused(token[len(token) - cut :] if cut else "")
    more = data.draw(st.text(st.sampled_from(TOKEN_CHARS), min_size=1, max_size=8))
    assert refused(token + more)
    assert refused(more + token)
    # a character inserted anywhere
    assert refused(token[:cut] + more[0] + token[cut:])


@LEAN
@given(VALID_ADDRESS, LIST, CAMPAIGN)
def test_rotation_old_tokens_verify_until_their_secret_is_removed(
    address: str, list_name: str, campaign: str
) -> None:
    before = make_token(Secrets([OLD]), address, list_name, campaign)
    after = make_token(Secrets([NEW, OLD]), address, list_name, campaign)
    assert before != after  # the first secret signs
    for token in (before, after):
        assert not refused(token, Secrets([NEW, OLD]))
    assert refused(before, Secrets([NEW]))
    assert not refused(after, Secrets([NEW]))
    assert refused(after, Secrets([OLD]))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(secret: str, payload: bytes) -> str:
    """A version 1 token (the fields in clear), made here and not by make_token."""
    mac = hmac.digest(secret.encode(), b"mailspool unsubscribe\0" + payload, hashlib.sha256)
    return f"{b64(payload)}.{b64(mac[:16])}"


def sealed(secret: str, fields: bytes, version: bytes = b"\x02") -> str:
    """A token in the documented format, made here and not by make_token: the tag is
    HMAC-SHA256 over the label, the version and the fields; the fields are encrypted with
    AES-256-CTR from the tag, under HMAC-SHA256(secret, the encryption label)."""
    key = secret.encode()
    tag = hmac.digest(key, b"mailspool unsubscribe\0" + version + fields, hashlib.sha256)[:16]
    aes = hmac.digest(key, b"mailspool unsubscribe encryption\0", hashlib.sha256)
    ciphertext = Cipher(algorithms.AES(aes), modes.CTR(tag)).encryptor().update(fields)
    return f"{b64(version + ciphertext)}.{b64(tag)}"


def test_the_documented_format() -> None:
    fields = b"\x0fann@example.com\x04news\x02c1"
    token = make_token(Secrets([NEW]), "ann@example.com", "news", "c1")
    assert token == sealed(NEW, fields)
    assert read_token(Secrets([NEW]), token) == Unsubscribe("ann@example.com", "news", "c1")


def test_links_of_version_1_still_work() -> None:
    # messages sent before the links were encrypted carry the fields in clear
    payload = b"\x01\x0fann@example.com\x04news\x02c1"
    assert read_token(Secrets([NEW]), signed(NEW, payload)) == Unsubscribe(
        "ann@example.com", "news", "c1"
    )
    assert refused(signed(OTHER, payload), Secrets([NEW]))


def test_a_token_shows_neither_the_address_nor_the_list() -> None:
    token = make_token(SECRETS, "ann.lee@example.com", "weekly-news", "c1")
    payload = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    for clear in (b"ann.lee", b"example", b"weekly"):
        assert clear not in payload
    # and the same message always carries the same link (a retry sends the same bytes)
    assert token == make_token(SECRETS, "ann.lee@example.com", "weekly-news", "c1")
    assert token != make_token(SECRETS, "ann.lee@example.com", "weekly-news", "c2")


def test_signed_payloads_that_do_not_parse_are_refused() -> None:
    for version, fields in (
        (b"\x02", b""),
        (b"\x03", b"\x0fann@example.com\x04news\x02c1"),  # a version we do not know
        (b"\x02", b"\x0fann@example.com\x04news\x02c1+"),  # bytes after the fields
        (b"\x02", b"\x0fann@example.com\x04news"),  # a field missing
        (b"\x02", b"\x0fann@example.com\x04news\x09c1"),  # a field cut short
        (b"\x02", b"\x0fann@example.com\x04news\x02\xff\xfe"),  # not UTF-8
    ):
        assert refused(sealed(NEW, fields, version), Secrets([NEW])), (version, fields)
    for payload in (
        b"",
        b"\x01\x0fann@example.com\x04news\x02c1+",
        b"\x01\x0fann@example.com\x04news",
    ):
        assert refused(signed(NEW, payload), Secrets([NEW])), payload


def test_a_token_spelled_with_other_spare_bits_is_refused() -> None:
    """Base64 of 16 bytes leaves 4 bits of its last character unused; a lenient decoder
    reads other values of them as the same bytes, which would make two tokens of one."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    for campaign in ("c1", "c12"):  # payloads of 25 and 26 bytes: 4 and 2 spare bits
        parts = make_token(SECRETS, "ann@example.com", "news", campaign).split(".")
        for i, part in enumerate(parts):  # the payload, then the MAC
            spare_bits = {2: 4, 3: 2}[len(part) % 4]
            last = alphabet.index(part[-1])
            assert last % 2**spare_bits == 0
            for spare in range(1, 2**spare_bits):
                other = [*parts]
                other[i] = part[:-1] + alphabet[last + spare]
                assert refused(".".join(other))


def test_a_token_cannot_be_made_to_name_someone_else() -> None:
    ann = make_token(SECRETS, "ann@example.com", "news", "c1")
    bob = make_token(SECRETS, "bob@example.com", "news", "c1")
    ann_mac = ann.split(".")[1]
    bob_payload = bob.split(".")[0]
    # another payload under this MAC, or another list spliced in
    assert refused(f"{bob_payload}.{ann_mac}")
    other_list = make_token(SECRETS, "ann@example.com", "offers", "c1").split(".")[0]
    assert refused(f"{other_list}.{ann_mac}")
    # the same format sealed with a key we do not hold
    forged = make_token(Secrets([OTHER]), "bob@example.com", "news", "c1")
    assert refused(forged)
    assert not refused(forged, Secrets([OTHER]))  # the forgery is well made: only the key lacks
    # the ciphertext of one token under the tag of another
    assert refused(f"{ann.split('.')[0]}.{bob.split('.')[1]}")


def test_garbage_is_refused_without_detail() -> None:
    token = make_token(SECRETS, "ann@example.com", "news", "c1")
    payload, mac = token.split(".")
    for junk in (
        "",
        ".",
        "..",
        "a.b",
        payload,
        f"{payload}.",
        f".{mac}",
        f"{payload}.{mac}.",
        f"{payload}=.{mac}",
        f"{payload}.{mac}==",
        f"{payload}.{mac[:-1]}",
        f"{payload[:-1]}.{mac}",
        token.replace("-", "+").replace("_", "/"),
        token.upper(),
        " " + token,
        token + "\n",
        "A" * (MAX_TOKEN_CHARS + 1),
        "é" * 40,
        "\x00" * 10,
    ):
        if junk != token:
            assert refused(junk), junk


def test_secrets_never_show() -> None:
    secrets = Secrets([NEW, OLD])
    assert NEW not in repr(secrets) and OLD not in str(secrets)
    assert "2" in repr(secrets) and len(secrets) == 2
    with pytest.raises(ConfigError) as info:
        Secrets([NEW, "short-secret"])
    assert "short-secret" not in str(info.value)
    assert "secret 2 of 2" in str(info.value)


def test_secrets_from_the_environment(tmp_path: Path) -> None:
    env = {ENV_SECRET: f" {NEW} , {OLD},"}
    secrets = Secrets.from_environment(env)
    assert len(secrets) == 2
    token = make_token(secrets, "ann@example.com", "news", "c")
    assert not refused(token, Secrets([NEW]))  # the first signs

    path = tmp_path / "secret"
    path.write_text(f"{OLD}\n")
    from_file = Secrets.from_environment({ENV_SECRET_FILE: str(path)})
    assert len(from_file) == 1
    assert not refused(make_token(from_file, "ann@example.com", "news", "c"), secrets)


def test_bad_secret_settings_stop_with_a_config_error(tmp_path: Path) -> None:
    short = "s3cr3t-but-short"
    path = tmp_path / "secret"
    path.write_text(short)
    cases = [
        {},
        {ENV_SECRET: ""},
        {ENV_SECRET: " , "},
        {ENV_SECRET: short},
        {ENV_SECRET: f"{NEW},{short}"},
        {ENV_SECRET: NEW, ENV_SECRET_FILE: str(path)},
        {ENV_SECRET_FILE: str(path)},
        {ENV_SECRET_FILE: str(tmp_path / "missing")},
        {ENV_SECRET_FILE: str(tmp_path)},
    ]
    for env in cases:
        with pytest.raises(ConfigError) as info:
            Secrets.from_environment(env)
        assert short not in str(info.value) and NEW not in str(info.value)
    with pytest.raises(ConfigError, match="missing"):
        Secrets.from_environment({ENV_SECRET_FILE: str(tmp_path / "missing")})


def test_the_headers_of_rfc_8058() -> None:
    base = check_unsubscribe_url("https://mail.example.com/u/")
    assert list_unsubscribe_headers(base, "TOKEN") == [
        ("List-Unsubscribe", "<https://mail.example.com/u/TOKEN>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://mail.example.com/u", "https://mail.example.com/u"),
        ("https://mail.example.com/u/", "https://mail.example.com/u"),
        ("HTTPS://mail.example.com:8443/lists/u", "HTTPS://mail.example.com:8443/lists/u"),
        ("https://mail.example.com", "https://mail.example.com"),
        ("http://127.0.0.1:8080/u", "http://127.0.0.1:8080/u"),
        ("http://localhost/u", "http://localhost/u"),
        ("http://[::1]:8000/u", "http://[::1]:8000/u"),
    ],
)
def test_unsubscribe_urls_accepted(url: str, base: str) -> None:
    assert check_unsubscribe_url(url) == base


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://mail.example.com/u", "https"),
        ("ftp://mail.example.com/u", "https"),
        ("mail.example.com/u", "https://HOST"),
        ("https:///u", "https://HOST"),
        ("https://mail.example.com/u?list=news", "query string"),
        ("https://mail.example.com/u#x", "fragment"),
        ("https://mail.example.com/u x", "spaces"),
        ("https://mail.example.com/<u>", "spaces"),
        ("https://bücher.example/u", "xn--"),
        ("https://mail.example.com:http/u", "not a valid URL"),
        ("https://" + "u" * 300, "300"),
    ],
)
def test_unsubscribe_urls_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_unsubscribe_url(url)


def test_credentials_in_the_url_are_refused_and_not_shown() -> None:
    with pytest.raises(ConfigError, match="no user or password") as info:
        check_unsubscribe_url("https://admin:hunter2@mail.example.com/u")
    assert "hunter2" not in str(info.value)
