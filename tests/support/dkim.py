"""Two independent DKIM verifiers for the tests, each fed the records that keygen printed
in place of DNS: dkimpy, and Perl's Mail::DKIM (tests/support/dkim_verify.pl)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dkim
import dns.rdataclass
import dns.rdatatype
import dns.zonefile

from tests.support.services import need

PERL_SCRIPT = Path(__file__).with_name("dkim_verify.pl")


def txt_records(records: list[str]) -> dict[str, bytes]:
    """Zone-file lines as a DNS server would load them (dnspython's zone-file reader):
    owner name -> the TXT value, its character-strings joined."""
    out = {}
    for line in records:
        for rrset in dns.zonefile.read_rrsets(line, rdclass=None, default_ttl=3600):
            assert rrset.rdtype == dns.rdatatype.TXT and rrset.rdclass == dns.rdataclass.IN
            (rdata,) = rrset
            out[rrset.name.to_text()] = b"".join(rdata.strings)
    return out


def signature_tags(message: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature of the message, top first."""
    headers, _ = dkim.rfc822_parse(message)
    return [
        {
            k.decode(): re.sub(r"\s+", "", v.decode())
            for k, v in dkim.util.parse_tag_value(value).items()
        }
        for name, value in headers
        if name.lower() == b"dkim-signature"
    ]


def dkimpy_results(message: bytes, records: list[str]) -> list[str]:
    """dkimpy's verdict on each signature: "pass", "fail" (the signature does not match)
    or the error it raised (a body hash mismatch, a missing key...)."""
    txt = txt_records(records)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return txt.get(name.decode("ascii"))

    results = []
    for idx in range(len(signature_tags(message))):
        try:
            ok = dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as exc:
            results.append(f"error: {exc}")
        else:
            results.append("pass" if ok else "fail")
    return results


@dataclass(frozen=True)
class PerlResult:
    algorithm: str
    domain: str
    result: str
    detail: str


@functools.cache
def _perl_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = ["perl", "-MMail::DKIM::Verifier", "-MNet::DNS", "-e", "1"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def perl_results(message: bytes, records: list[str]) -> list[PerlResult]:
    """Mail::DKIM's verdict on each signature. Skips the test when perl or Mail::DKIM is
    missing here; fails under CI, where scripts/services.sh installs them."""
    need(_perl_dkim(), "perl with Mail::DKIM (Debian package libmail-dkim-perl)")
    env = {**os.environ, "DKIM_RECORDS": "\n".join(records)}
    proc = subprocess.run(
        ["perl", str(PERL_SCRIPT)], input=message, capture_output=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = []
    for line in proc.stdout.decode().splitlines():
        if line.startswith("signature "):
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            out.append(
                PerlResult(
                    fields["a"], fields["d"], fields["result"], fields["detail"].replace("_", " ")
                )
            )
    return out
