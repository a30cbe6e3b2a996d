"""DKIM keys: keygen's file and DNS record, and every way a key file can be wrong, each
caught when it is loaded and reported with the file's name."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
import trustme
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mailspool.errors import ConfigError
from mailspool.message.dkim_keys import DKIMKey, generate_key, load_keys, parse_dkim_spec
from tests.support.dkim import dkimpy_results, perl_results, txt_records

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
PEM = ser.Encoding.PEM
NONE = ser.NoEncryption()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # the most permissive umask: keygen must not rely on the caller's
    old = os.umask(0)
    yield
    os.umask(old)


def test_rsa_keygen_writes_a_0600_pem_and_returns_the_record(
    tmp_path: Path, umask_zero: None
) -> None:
    path, record = generate_key("Example.COM", "s2023", out_dir=tmp_path / "keys")
    assert path == tmp_path / "keys" / "example.com.s2023.key"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    # the record, read as a zone file by dnspython: one name, quoted strings of <= 255
    assert record.startswith('s2023._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; " "p=MII')
    strings = record.split(" IN TXT ", 1)[1]
    assert all(len(s) <= 255 for s in strings.strip('"').split('" "'))
    (value,) = txt_records([record]).values()
    assert list(txt_records([record])) == ["s2023._domainkey.example.com."]
    tags = dict(t.strip().split("=", 1) for t in value.decode().split(";"))
    assert tags.keys() == {"v", "k", "p"} and tags["v"] == "DKIM1" and tags["k"] == "rsa"
    public = ser.load_der_public_key(base64.b64decode(tags["p"]))
    key = DKIMKey.load("example.com", "s2023", path)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048 == key.bits
    assert public.public_numbers() == key.private.public_key().public_numbers()
    assert key.algorithm == "rsa" and key.dns_record == record


def test_ed25519_keygen_writes_dkimpys_seed_and_a_raw_public_key(
    tmp_path: Path, umask_zero: None
) -> None:
    path, record = generate_key("example.com", "ed", algorithm="ed25519", out_dir=tmp_path)
    assert mode(path) == 0o600
    text = path.read_text()
    assert text.endswith("\n") and len(base64.b64decode(text.strip(), validate=True)) == 32
    (value,) = txt_records([record]).values()
    assert record.count('"') == 2 and value.startswith(b"v=DKIM1; k=ed25519; p=")
    key = DKIMKey.load("example.com", "ed", path)
    raw = base64.b64decode(value.partition(b"p=")[2])
    assert key.algorithm == "ed25519" and raw == key.private.public_key().public_bytes_raw()
    assert text.strip() not in repr(key) and "private" not in repr(key)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_keygen_files_sign_with_dkimpy_itself(tmp_path: Path, algorithm: str) -> None:
    # the key files are in the forms dkimpy reads: its own dkim.sign takes them as they are
    path, record = generate_key("example.com", "s1", algorithm=algorithm, out_dir=tmp_path)
    header = dkim.sign(
        MESSAGE,
        b"s1",
        b"example.com",
        path.read_bytes(),
        signature_algorithm=b"rsa-sha256" if algorithm == "rsa" else b"ed25519-sha256",
    )
    assert dkimpy_results(header + MESSAGE, [record]) == ["pass"]
    if algorithm == "rsa":
        assert [r.result for r in perl_results(header + MESSAGE, [record])] == ["pass"]


def test_keygen_never_overwrites_a_file(tmp_path: Path) -> None:
    path, _ = generate_key("example.com", "s1", algorithm="ed25519", out_dir=tmp_path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=f"{path}: already exists"):
        generate_key("example.com", "s1", algorithm="ed25519", out_dir=tmp_path)
    assert path.read_bytes() == before


def test_keygen_key_sizes_and_bad_arguments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for bits in (512, 1023, 8192):
        with pytest.raises(ConfigError, match=f"1024 to 4096 bits, not {bits}"):
            generate_key("example.com", f"b{bits}", bits=bits, out_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="mailspool.dkim"):
        path, _ = generate_key("example.com", "weak", bits=1024, out_dir=tmp_path)
    assert "1024 bits is weak" in caplog.text
    assert DKIMKey.load("example.com", "weak", path).bits == 1024
    with pytest.raises(ConfigError, match="'dsa'"):
        generate_key("example.com", "s1", algorithm="dsa", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a valid domain name"):
        generate_key("exa mple.com", "s1", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="selector 'a_b' is not a DNS label"):
        generate_key("example.com", "a_b", out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.com.weak.key"]


def test_other_key_forms_load(tmp_path: Path) -> None:
    # PKCS#8 PEM of either type (openssl genpkey), and a 64-byte seed+public (libsodium)
    ed = ed25519.Ed25519PrivateKey.generate()
    files = {
        "rsa8.pem": pkcs8(rsa.generate_private_key(65537, 2048)),
        "ed8.pem": pkcs8(ed),
        "ed64.key": base64.b64encode(ed.private_bytes_raw() + ed.public_key().public_bytes_raw()),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        key = DKIMKey.load("example.com", "s1", tmp_path / name)
        assert key.algorithm == ("rsa" if name.startswith("rsa") else "ed25519")


def pkcs8(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, ser.PrivateFormat.PKCS8, NONE)


def _der_item(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 128:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der(fields: list[int]) -> bytes:
    """A DER SEQUENCE of INTEGERs (the form of a PKCS#1 RSA key)."""
    ints = b"".join(_der_item(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big")) for v in fields)
    return _der_item(0x30, ints)


def _mismatched_rsa() -> bytes:
    """A PKCS#1 key whose modulus (public half) is another key's."""
    n = rsa.generate_private_key(65537, 2048).private_numbers()
    other = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n
    der = _der([0, other, 65537, n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp])
    return (
        b"-----BEGIN RSA PRIVATE KEY-----\n"
        + base64.encodebytes(der)
        + b"-----END RSA PRIVATE KEY-----\n"
    )


def _mismatched_ed25519() -> bytes:
    a, b = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    return base64.b64encode(a.private_bytes_raw() + b.public_key().public_bytes_raw())


def _short_rsa() -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip(
            "openssl is not installed (cryptography no longer makes RSA keys under 1024 bits)"
        )
    out = subprocess.run(["openssl", "genrsa", "768"], capture_output=True, check=True).stdout
    assert out.startswith(b"-----BEGIN")
    return out


def _rsa_public() -> bytes:
    public = rsa.generate_private_key(65537, 2048).public_key()
    return public.public_bytes(PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def _p_value() -> bytes:
    public = rsa.generate_private_key(65537, 2048).public_key()
    return base64.b64encode(
        public.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    )


def _encrypted() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw"))


def _certificate() -> bytes:
    return trustme.CA().cert_pem.bytes()


def _truncated() -> bytes:
    return pkcs8(rsa.generate_private_key(65537, 2048))[:300]


NOT_A_KEY = "is not a DKIM private key"
PUBLIC_RECORD = "holds a public key (the DNS record's)"
BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "garbage": (lambda: b"hello, I am not a key\n", NOT_A_KEY),
    "empty": (lambda: b"", NOT_A_KEY),
    "binary": (lambda: bytes(range(256)), NOT_A_KEY),
    "public PEM": (_rsa_public, "holds a public key, not the private key"),
    "DNS record": (lambda: b"v=DKIM1; k=rsa; p=MIIBIjAN\n", PUBLIC_RECORD),
    "p= value": (_p_value, PUBLIC_RECORD),
    "certificate": (_certificate, "holds a certificate"),
    "encrypted": (_encrypted, "the key is encrypted"),
    "EC key": (lambda: pkcs8(ec.generate_private_key(ec.SECP256R1())), "EC keys cannot sign DKIM"),
    "truncated PEM": (_truncated, "is not a valid private key"),
    "RSA halves mismatched": (
        _mismatched_rsa,
        "is not a valid private key (damaged or mismatched)",
    ),
    "Ed25519 halves mismatched": (
        _mismatched_ed25519,
        "its public half does not match its private",
    ),
    "RSA 768": (_short_rsa, "an RSA key of 768 bits is too short"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_key_file_is_refused_naming_the_file(tmp_path: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    path = tmp_path / "bad.key"
    path.write_bytes(make())
    with pytest.raises(ConfigError) as info:
        DKIMKey.load("example.com", "s1", path)
    assert str(info.value).startswith(f"DKIM key file {path}: ")
    assert reason in str(info.value)


def test_a_key_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"DKIM key file {tmp_path / 'nope.key'}: not found"):
        DKIMKey.load("example.com", "s1", tmp_path / "nope.key")
    with pytest.raises(ConfigError, match=f"DKIM key file {tmp_path}: is a directory"):
        DKIMKey.load("example.com", "s1", tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block: refused without opening it
    with pytest.raises(ConfigError, match=f"DKIM key file {fifo}: is not a regular file"):
        DKIMKey.load("example.com", "s1", fifo)
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"A" * 100_000)
    with pytest.raises(ConfigError, match=f"{huge}: 100000 bytes is too large"):
        DKIMKey.load("example.com", "s1", huge)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    path, _ = generate_key("example.com", "s1", algorithm="ed25519", out_dir=tmp_path)
    path.chmod(0)
    with pytest.raises(ConfigError, match=f"{path}: cannot be read \\(permission denied\\)"):
        DKIMKey.load("example.com", "s1", path)


def test_a_key_readable_by_others_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = generate_key("example.com", "s1", algorithm="ed25519", out_dir=tmp_path)
    DKIMKey.load("example.com", "s1", path)
    assert "readable by other users" not in caplog.text
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mailspool.dkim"):
        DKIMKey.load("example.com", "s1", path)
    assert f"{path}: readable by other users (mode 644)" in caplog.text


def test_dkim_specs(tmp_path: Path) -> None:
    assert parse_dkim_spec("Bücher.example:S1:/k/a:b.key") == (
        "xn--bcher-kva.example",
        "s1",
        Path("/k/a:b.key"),
    )
    for spec in ("example.com:s1", "example.com::k.key", ":s1:k.key", "example.com:s1:"):
        with pytest.raises(ConfigError, match="expected DOMAIN:SELECTOR:KEYFILE"):
            parse_dkim_spec(spec)
    with pytest.raises(ConfigError, match="DKIM domain 'localhost' is not a valid domain name"):
        parse_dkim_spec("localhost:s1:k.key")
    with pytest.raises(ConfigError, match="selector '-x' is not a DNS label"):
        parse_dkim_spec("example.com:-x:k.key")


def test_load_keys_checks_every_spec_at_start(tmp_path: Path) -> None:
    rsa_path, _ = generate_key("example.com", "r", out_dir=tmp_path)
    ed_path, _ = generate_key("example.com", "e", algorithm="ed25519", out_dir=tmp_path)
    other, _ = generate_key("example.com", "x", algorithm="ed25519", out_dir=tmp_path)
    keys = load_keys(
        [f"example.com:r:{rsa_path}", f"example.com:e:{ed_path}", f"EXAMPLE.COM:e:{ed_path}"]
    )
    assert [(k.selector, k.algorithm) for k in keys] == [("r", "rsa"), ("e", "ed25519")]
    taken = f"DKIM key file {other}: selector e of example.com already has another key, {ed_path}"
    with pytest.raises(ConfigError, match=taken):
        load_keys([f"example.com:e:{ed_path}", f"example.com:e:{other}"])
    with pytest.raises(ConfigError, match=f"DKIM key file {tmp_path / 'gone.key'}: not found"):
        load_keys([f"example.com:r:{rsa_path}", f"example.com:g:{tmp_path / 'gone.key'}"])
