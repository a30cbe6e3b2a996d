"""The deliverability walkthrough of issue 13, as a new user would do it, with the real
commands: make DKIM keys, send the bundled example signed and with one-click unsubscribe
links to the outbox, check a message's signatures and headers, unsubscribe one recipient
through a running ``mailspool serve``, send again and see that recipient suppressed.
Then the same through ``serve`` alone: messages signed, linked per list, suppressed."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.message.unsubscribe import Secrets, read_token
from tests.support.api import ApiServer, message
from tests.support.cli import Result
from tests.support.dkim import dkimpy_results, perl_results, signature_tags
from tests.support.paths import ROOT

CLI = Callable[..., Result]
SECRET = "walkthrough-secret-" + "z" * 32
ENV = {"MAILSPOOL_UNSUBSCRIBE_SECRET": SECRET}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def keygen(cli: CLI, selector: str, algorithm: str = "rsa", domain: str = "example.com") -> str:
    """Make a key in ./keys; returns the DNS record printed."""
    res = cli("dkim", "keygen", domain, "--selector", selector, "--algorithm", algorithm,
              "--out", "keys")  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def dkim(selector: str, domain: str = "example.com") -> str:
    return f"{domain}:{selector}:keys/{domain}.{selector}.key"


@pytest.fixture
def example(tmp_path: Path) -> int:
    """The bundled example in the working directory; returns its number of rows."""
    for name in ("recipients.csv", "welcome.txt"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    with (tmp_path / "recipients.csv").open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def summary(res: Result) -> dict[str, Any]:
    assert res.stdout, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def parsed(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def suppressions(srv: ApiServer) -> list[dict[str, Any]]:
    with srv.client() as api:
        r = api.get("/v1/suppressions", params={"limit": 1000})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["entries"]
    return found


def test_sign_link_unsubscribe_and_send_again(cli: CLI, tmp_path: Path, example: int) -> None:
    # 1. keys: an RSA one and an Ed25519 one for the From domain, records printed
    records = [keygen(cli, "s2025"), keygen(cli, "e2025", "ed25519")]
    # the unsubscribe endpoint: serve on the same queue, no workers of its own
    srv = ApiServer(
        tmp_path, "--workers", "0", queue=f"sqlite:///{tmp_path / 'mailspool.db'}", env=ENV
    )
    try:
        # 2. send the example, signed and linked, to the outbox
        args = ["recipients.csv", "--template", "welcome.txt", "--dkim", dkim("s2025"),
                "--dkim", dkim("e2025"), "--unsubscribe-url", f"{srv.url}/u", "--json"]  # fmt: skip
        first = cli("send", *args, env=ENV)
        assert first.returncode == 0, first.stderr
        s = summary(first)
        assert (s["sent"], s["suppressed"], s["unsigned"], s["rejected"]) == (example, 0, 0, 0)
        emls = sorted((tmp_path / "outbox" / s["campaign"]).glob("*.eml"))
        assert len(emls) == example

        # 3. open one: two signatures that verify against the records, and the headers
        raw = next(p.read_bytes() for p in emls if b"<mary@example.com>" in p.read_bytes())
        assert dkimpy_results(raw, records) == ["pass", "pass"]
        tags = signature_tags(raw)
        assert {t["a"] for t in tags} == {"rsa-sha256", "ed25519-sha256"}
        for t in tags:
            assert t["d"] == "example.com" and t["c"] == "relaxed/relaxed"
            signed = t["h"].lower().split(":")
            assert {"from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= set(
                signed
            )
        perl = {r.algorithm: r.result for r in perl_results(raw, records)}
        assert perl["rsa-sha256"] == "pass"  # an independent verifier
        msg = parsed(raw)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(msg["List-Unsubscribe"])
        assert link.startswith(f"<{srv.url}/u/") and link.endswith(">")
        url = link[1:-1]
        named = read_token(Secrets([SECRET]), url.rsplit("/", 1)[1])
        assert (named.address, named.list_name, named.campaign) == (
            "mary@example.com", "default", s["campaign"]
        )  # fmt: skip

        # 4. a GET (a link scanner, the recipient's browser) shows a page, changes nothing
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and 'value="One-Click"' in page.text
        assert suppressions(srv) == []
        # the provider's one-click POST: a form, no token, no cookie
        r = httpx.post(url, data=ONE_CLICK, timeout=30)
        assert r.status_code == 200, r.text
        (entry,) = suppressions(srv)
        assert (entry["address"], entry["list"], entry["reason"], entry["source"]) == (
            "mary@example.com", "default", "unsubscribed", f"unsubscribe:{s['campaign']}"
        )  # fmt: skip

        # 5. the next campaign: mary is counted as suppressed, not sent, and that is no error
        again = cli("send", *args, "--campaign", "june", env=ENV)
        assert again.returncode == 0, again.stderr
        s2 = summary(again)
        assert (s2["sent"], s2["suppressed"], s2["dead"]) == (example - 1, 1, 0)
        june = [p.read_bytes() for p in (tmp_path / "outbox" / "june").glob("*.eml")]
        assert len(june) == example - 1
        assert not [m for m in june if b"<mary@example.com>" in m]
        status = cli("status", "--campaign", "june", "--json")
        st = json.loads(status.stdout)
        assert (st["suppressed"], st["sent"], st["total"]) == (1, example - 1, example)
        text = cli("status", "--campaign", "june")
        assert "suppressed=1" in text.stdout
        # and a re-run of that campaign does not send her either
        rerun = summary(cli("send", *args, "--campaign", "june", env=ENV))
        assert rerun["sent"] == 0 and rerun["skipped_already_sent"] == example - 1
    finally:
        srv.stop()


def test_preview_shows_the_headers_the_message_will_carry(cli: CLI, example: int) -> None:
    keygen(cli, "s1")
    res = cli("preview", "recipients.csv", "--template", "welcome.txt", "--dkim", dkim("s1"),
              "--unsubscribe-url", "https://mail.example.com/u", "--list", "news",
              env=ENV)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "DKIM-Signature: v=1; a=rsa-sha256;" in res.stdout
    assert "List-Unsubscribe: <https://mail.example.com/u/" in res.stdout
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in res.stdout
    link = res.stdout.split("List-Unsubscribe: <", 1)[1].split(">", 1)[0]
    assert read_token(Secrets([SECRET]), link.rsplit("/", 1)[1]).list_name == "news"


def test_messages_without_a_key_are_counted_or_refused(
    cli: CLI, tmp_path: Path, example: int
) -> None:
    keygen(cli, "s1", domain="other.example")  # not the From domain of the example
    args = ["recipients.csv", "--template", "welcome.txt", "--dkim", dkim("s1", "other.example")]
    res = cli("send", *args, "--json")
    assert res.returncode == 0, res.stderr  # unsigned is allowed, and counted
    assert summary(res)["unsigned"] == example
    res = cli("send", *args, "--dkim-required", "--campaign", "strict", "--json")
    assert res.returncode == 1
    s = summary(res)
    assert (s["rejected"], s["sent"]) == (example, 0)
    assert "no DKIM key" in (tmp_path / s["rejects_file"]).read_text()


def test_a_bad_key_or_a_missing_secret_stops_at_start(
    cli: CLI, tmp_path: Path, example: int
) -> None:
    args = ["recipients.csv", "--template", "welcome.txt"]
    res = cli("send", *args, "--dkim", "example.com:s1:keys/missing.key")
    assert res.returncode == 2 and "keys/missing.key" in res.stderr
    res = cli("send", *args, "--unsubscribe-url", "https://mail.example.com/u")
    assert res.returncode == 2 and "MAILSPOOL_UNSUBSCRIBE_SECRET" in res.stderr
    assert not list(tmp_path.glob("outbox/**/*.eml"))  # it stopped before sending any
    tokens = {"MAILSPOOL_API_TOKENS": "t" * 20}
    res = cli("serve", "--port", "0", "--unsubscribe-url", "https://mail.example.com/u",
              env=tokens)  # fmt: skip
    assert res.returncode == 2 and "MAILSPOOL_UNSUBSCRIBE_SECRET" in res.stderr
    res = cli("serve", "--port", "0", "--dkim", "example.com:s1:keys/missing.key", env=tokens)
    assert res.returncode == 2 and "keys/missing.key" in res.stderr


# -- the same through serve ------------------------------------------------------------


def wait_state(api: httpx.Client, job_id: str, states: tuple[str, ...]) -> str:
    """Poll until the job is in one of ``states`` (the bound only keeps a broken run
    from hanging)."""
    deadline = time.monotonic() + 30
    while (state := str(api.get(f"/v1/messages/{job_id}").json()["state"])) not in states:
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.05)
    return state


def test_serve_signs_links_per_list_and_suppresses(cli: CLI, tmp_path: Path) -> None:
    record = keygen(cli, "s1")
    srv = ApiServer(
        tmp_path, "--workers", "1", "--outbox", "out", "--dkim", dkim("s1"), "--list", "weekly",
        "--unsubscribe-url", "http://127.0.0.1:9/u", env=ENV,
    )  # fmt: skip
    final = ("sent", "dead", "suppressed")
    try:
        with srv.client() as api:
            r = api.post(
                "/v1/messages",
                json={"messages": [message("ann@example.com", list="news", campaign="c1"),
                                   message("ann@example.com", campaign="c2")]},
            )  # fmt: skip
            assert r.status_code == 202, r.text
            news, weekly = r.json()["ids"]
            assert wait_state(api, news, final) == wait_state(api, weekly, final) == "sent"
            links = {}  # campaign -> (address, list, link)
            for path in (tmp_path / "out").glob("*.eml"):
                raw = path.read_bytes()
                assert dkimpy_results(raw, [record]) == ["pass"]
                link = str(parsed(raw)["List-Unsubscribe"])[1:-1]
                named = read_token(Secrets([SECRET]), link.rsplit("/", 1)[1])
                links[named.campaign] = (named.address, named.list_name, link)
            assert links["c1"][:2] == ("ann@example.com", "news")
            assert links["c2"][:2] == ("ann@example.com", "weekly")  # the server's --list
            # ann leaves the news list: her next news message is not sent, weekly ones are
            token = links["c1"][2].rsplit("/", 1)[1]
            assert httpx.post(f"{srv.url}/u/{token}", data=ONE_CLICK).status_code == 200
            r = api.post(
                "/v1/messages",
                json={"messages": [message("ann@example.com", list="news", campaign="c3"),
                                   message("ann@example.com", list="weekly", campaign="c4")]},
            )  # fmt: skip
            assert r.status_code == 202, r.text
            news, weekly = r.json()["ids"]
            assert wait_state(api, news, final) == "suppressed"
            assert wait_state(api, weekly, final) == "sent"
            counts = api.get("/v1/campaigns/c3").json()["counts"]
            assert counts["suppressed"] == 1 and counts["sent"] == 0
    finally:
        srv.stop()


def test_serve_lets_clients_send_as_the_domains_of_its_keys(cli: CLI, tmp_path: Path) -> None:
    keygen(cli, "s1", domain="signed.example")
    # ApiServer allows example.com (--allowed-from); the key adds signed.example
    srv = ApiServer(tmp_path, "--workers", "0", "--dkim", dkim("s1", "signed.example"))
    try:
        with srv.client() as api:
            ok = api.post("/v1/messages", json=message(**{"from": "App <app@signed.example>"}))
            assert ok.status_code == 202, ok.text
            other = api.post("/v1/messages", json=message(**{"from": "App <app@other.example>"}))
            assert other.status_code == 422
            assert [e["field"] for e in other.json()["errors"]] == ["from"]
            assert "signed.example" in other.json()["errors"][0]["reason"]
    finally:
        srv.stop()
