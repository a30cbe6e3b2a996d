"""Webhook signatures as the Standard Webhooks specification defines them, checked by
its reference library (standardwebhooks), and the secret's configuration errors."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailspool.errors import ConfigError
from mailspool.webhooks.signing import ENV_SECRET, ENV_SECRET_FILE, WebhookSecrets

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"type":"sent","timestamp":"2026-12-03T00:00:00.000000Z","data":{}}'


def test_the_reference_library_verifies_a_signature() -> None:
    ts = int(time.time())
    headers = WebhookSecrets([SECRET], "test").headers("evt_1", ts, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "sent",
        "timestamp": "2026-12-03T00:00:00.000000Z",
        "data": {},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):  # a changed body
        Webhook(SECRET).verify(BODY.replace(b"sent", b"dead"), headers)
    with pytest.raises(WebhookVerificationError):  # another id
        Webhook(SECRET).verify(BODY, headers | {"webhook-id": "evt_2"})


def test_during_a_rotation_both_secrets_sign() -> None:
    headers = WebhookSecrets.parse(f"{OTHER}, {SECRET}", "test").headers(
        "evt_1", int(time.time()), BODY
    )
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OTHER).verify(BODY, headers)


def test_secrets_never_show() -> None:
    s = WebhookSecrets([SECRET], "test")
    assert SECRET[6:] not in repr(s) and SECRET[6:] not in str(s)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("k" * 40, "does not start with whsec_"),
        ("whsec_###", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes"),
    ],
)
def test_bad_secrets_are_refused_without_showing_them(value: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error) as got:
        WebhookSecrets.from_environment({ENV_SECRET: value})
    assert value not in str(got.value)
    assert ENV_SECRET in str(got.value)


def test_the_secret_from_a_file_or_neither(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "secret"  # type: ignore[operator]
    path.write_text(SECRET + "\n")
    s = WebhookSecrets.from_environment({ENV_SECRET_FILE: str(path)})
    Webhook(SECRET).verify(BODY, s.headers("evt_1", int(time.time()), BODY))
    with pytest.raises(ConfigError, match="set MAILSPOOL_WEBHOOK_SECRET or"):
        WebhookSecrets.from_environment({})
    with pytest.raises(ConfigError, match="not both"):
        WebhookSecrets.from_environment({ENV_SECRET: SECRET, ENV_SECRET_FILE: str(path)})
    with pytest.raises(ConfigError, match="cannot read"):
        WebhookSecrets.from_environment({ENV_SECRET_FILE: str(path) + ".missing"})
