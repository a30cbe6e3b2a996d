"""``mailspool serve`` as a user runs it (a subprocess on a free loopback port), and what
the API tests send it and wait for."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.testing import RecordingSMTPServer, free_port, wait_listening

TOKEN = "test-token-0123456789abcdef"
FINAL = ("sent", "dead")


class ApiServer:
    """``python -m mailspool serve`` in a subprocess; its stderr goes to a file."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        token: str = TOKEN,
        queue: str | None = None,
        env_tokens: bool = True,
    ) -> None:
        """``queue``: the queue URL (default a SQLite file in ``tmp``); ``env_tokens``:
        give ``token`` in MAILSPOOL_API_TOKENS (otherwise only ``env`` names tokens)."""
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = tmp / f"serve-{self.port}.log"
        self.db = tmp / "queue.db"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MAILSPOOL_", "OTEL_"))
        }
        if env_tokens:
            self.env["MAILSPOOL_API_TOKENS"] = token
        # the tests' messages come from example.com
        self.env["MAILSPOOL_ALLOWED_FROM"] = "example.com"
        self.env.update(env or {})
        cmd = [
            sys.executable, "-m", "mailspool", "serve", "--port", str(self.port),
            "--queue", queue or f"sqlite:///{self.db}", "--log-format", "json", *args,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_listening(self.port, 30):
            self.stop()
            pytest.fail(f"mailspool serve did not start:\n{self.log()}")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def readyz(self) -> tuple[int, str]:
        r = httpx.get(f"{self.url}/readyz", timeout=30)
        return r.status_code, str(r.json()["status"])

    def wait_readyz(self, code: int, status: str, timeout: float = 30) -> None:
        """Poll /readyz until it answers ``code`` and ``status`` (the bound only keeps a
        broken run from hanging)."""
        deadline = time.monotonic() + timeout
        while (got := self.readyz()) != (code, status):
            assert time.monotonic() < deadline, f"/readyz still {got}, not {(code, status)}"
            time.sleep(0.1)

    def wait_event(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e.get("event") == event]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {event!r} in the log:\n{self.log()}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_final(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Poll until the job is sent or dead (the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/messages/{job_id}").json()
        if body["state"] in FINAL:
            return body
        assert time.monotonic() < deadline, f"job {job_id} still {body['state']}"
        time.sleep(0.05)


def message(to: str = "bob@example.com", **extra: Any) -> dict[str, Any]:
    return {"from": "App <app@example.com>", "to": to, "subject": "Hello", "text": "Hi."} | extra


def delivered_to(smtpd: RecordingSMTPServer, address: str) -> list[Any]:
    return [m for m in smtpd.messages if address in m.recipients]


#: files the attachment tests post
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 8


def attachment(filename: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
    """A file of a JSON body, its base64 in 76-character lines as base64(1) writes it."""
    out = {"filename": filename, "content_base64": base64.encodebytes(data).decode()}
    return out if content_type is None else out | {"content_type": content_type}
