"""The signature checks docs/bounces.md tells receivers to use, run as written against
requests mailspool signs: the Python one (the reference library) and the Node.js one
(by hand), so that the documentation cannot drift from the signing."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time

from mailspool.webhooks.signing import WebhookSecrets
from tests.support.paths import ROOT
from tests.support.services import need

DOC = ROOT / "docs" / "bounces.md"
SECRET = "whsec_" + base64.b64encode(b"d" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"e" * 32).decode()


def block(language: str) -> str:
    found = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(found) == 1, f"one {language} block in {DOC}"
    return str(found[0])


def signed(body: str, *, at: float | None = None) -> dict[str, str]:
    ts = int(time.time() if at is None else at)
    return WebhookSecrets.parse(f"{SECRET},{OLD}", "test").headers("evt_1", ts, body.encode())


BODY = '{"type":"sent","data":{"recipient":"zoë@example.com"}}'


def test_the_python_example_verifies() -> None:
    scope: dict[str, object] = {"SECRET": SECRET}
    exec(block("python"), scope)  # the documentation's own code
    receive = scope["receive"]
    assert callable(receive)
    assert receive(BODY.encode(), signed(BODY)) == json.loads(BODY)
    refused = scope["WebhookVerificationError"]
    assert isinstance(refused, type)
    for body, headers in (
        (BODY + " ", signed(BODY)),
        (BODY, signed(BODY, at=time.time() - 3600)),
    ):
        try:
            receive(body.encode(), headers)
        except refused:
            continue
        raise AssertionError("a bad request was taken")


def test_the_nodejs_example_verifies() -> None:
    node = shutil.which("node")
    need(node is not None, "node (Node.js)")
    harness = block("javascript") + (
        "const t = JSON.parse(require('fs').readFileSync(0));\n"
        "console.log(JSON.stringify(t.cases.map(c => verify(t.secret, Buffer.from(c.body),"
        " c.headers))));\n"
    )
    cases = [
        {"body": BODY, "headers": signed(BODY)},
        {"body": BODY + " ", "headers": signed(BODY)},
        {"body": BODY, "headers": signed(BODY, at=time.time() - 3600)},
        {"body": BODY, "headers": signed(BODY) | {"webhook-id": "evt_2"}},
    ]
    out = subprocess.run(
        [str(node), "-e", harness],
        input=json.dumps({"secret": SECRET, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(out.stdout) == [True, False, False, False]
