"""``mailspool send`` logging in with OAuth2 (XOAUTH2) as a user runs it: the access
token comes from a token endpoint on loopback and expires in the middle of the run
(the server refuses it while the endpoint said it had an hour left); every message is
delivered once, none deferred or dead, and no token or secret reaches the output."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path

from mailspool.testing import RecordingSMTPServer
from mailspool.testing.oauth2 import TokenIssuer
from tests.support.cli import TEMPLATE, Result, write_csv

USER = "news@example.com"


def test_a_token_expiring_mid_run_is_refreshed_and_nothing_is_lost(
    tmp_path: Path, cli: Callable[..., Result], server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    rows = [(f"user{i}", f"user{i}@example.com") for i in range(24)]
    write_csv(tmp_path / "r.csv", rows)
    (tmp_path / "t.txt").write_text(TEMPLATE)
    with (
        TokenIssuer(user=USER, lifetime=0.3, said_lifetime=3600) as issuer,
        RecordingSMTPServer(tls=server_tls, require_starttls=True, oauth2=issuer.valid) as srv,
    ):
        res = cli(
            "send", "r.csv", "--template", "t.txt", "--json",
            "--rate", "30/s", "--concurrency", "1",
            "--smtp", f"smtp://news%40example.com@127.0.0.1:{srv.port}?auth=xoauth2&max_messages=4"
            f"&cafile={ca_file}",
            env={
                "MAILSPOOL_SMTP_OAUTH2_TOKEN_URL": issuer.url,
                "MAILSPOOL_SMTP_OAUTH2_CLIENT_ID": issuer.client_id,
                "MAILSPOOL_SMTP_OAUTH2_CLIENT_SECRET": issuer.client_secret,
                "MAILSPOOL_SMTP_OAUTH2_REFRESH_TOKEN": issuer.refresh_token,
            },
        )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["pending"], summary["dead"]) == (24, 0, 0)
    got = sorted(r for m in srv.messages for r in m.recipients)
    assert got == sorted(e for _, e in rows)
    assert {(m.auth, m.tls) for m in srv.messages} == {(USER, True)}
    assert issuer.refused and issuer.requests == len(issuer.refused) + 1
    output = res.stdout + res.stderr
    assert not any(token in output for token in issuer.issued)
    assert issuer.client_secret not in output and issuer.refresh_token not in output
