"""The dashboard in headless Chromium (tests/support/browser.py) against ``mailspool
serve`` delivering to an in-process aiosmtpd server at a limited rate: sign in, watch a
campaign's counts move, pause it and see delivery stop at the server, resume it, retry a
dead letter and see it delivered, the suppression list and the message lookup. Each page
visited is saved as a screenshot (docs/img/dashboard-*.png with MAILSPOOL_SCREENSHOTS=docs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailspool.testing import RecordingSMTPServer
from tests.support.api import ApiServer, delivered_to, message, wait_final
from tests.support.browser import (
    PHONE,
    confirm,
    number,
    screenshot,
    sign_in,
    text,
    wait_for,
)

RATE = 10  # messages a second: a campaign of a few dozen takes a few seconds


@pytest.fixture(scope="module")
def smtpd_ui() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, smtpd_ui: RecordingSMTPServer
) -> Iterator[ApiServer]:
    srv = ApiServer(
        tmp_path_factory.mktemp("ui"), "--smtp", f"smtp://127.0.0.1:{smtpd_ui.port}",
        "--workers", "1", "--rate", f"{RATE}/s", "--concurrency", "2",
    )  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(chromium: Any, server: ApiServer) -> Any:
    """Chromium signed in to the server (the login form's screenshot taken on the way)."""
    from selenium.webdriver.common.by import By

    chromium.get(f"{server.url}/ui/login")
    wait_for(lambda: chromium.find_elements(By.ID, "token"), message="the login form")
    return chromium


def post_campaign(server: ApiServer, campaign: str, n: int) -> list[str]:
    batch = [message(to=f"{campaign}{i}@example.org", campaign=campaign) for i in range(n)]
    with server.client() as api:
        r = api.post("/v1/messages", json={"messages": batch})
    assert r.status_code == 202, r.text
    return list(r.json()["ids"])


def sent_to(smtpd: RecordingSMTPServer, campaign: str) -> int:
    return sum(1 for m in smtpd.messages if any(r.startswith(campaign) for r in m.recipients))


def test_sign_in_and_watch_a_campaign_move(
    browser: Any, server: ApiServer, smtpd_ui: RecordingSMTPServer, shots: Path
) -> None:
    screenshot(browser, shots, "login")
    sign_in(browser, server.url, server.token)
    post_campaign(server, "spring", 40)
    card = '[data-campaign="spring"]'
    first = wait_for(lambda: number(browser, f"{card} .count-sent dd"), message="a first send")
    later = wait_for(
        lambda: (n := number(browser, f"{card} .count-sent dd")) > first and n,
        message="the sent count moving without a reload",
    )
    assert later > first
    assert text(browser, f"{card} .rate") != ""
    screenshot(browser, shots, "campaigns")
    screenshot(browser, shots, "campaigns-phone", PHONE)
    browser.get(f"{server.url}/ui/campaigns/spring")
    wait_for(lambda: number(browser, "#counts .count-sent dd") == 40, message="all 40 sent")
    wait_for(lambda: "example.org" in text(browser, "#domains tbody"), message="by domain")
    points = browser.find_element("css selector", "#chart polyline").get_attribute("points")
    assert len({p.split(",")[1] for p in points.split()}) > 1  # the rate rose from zero
    screenshot(browser, shots, "campaign")
    assert sent_to(smtpd_ui, "spring") == 40


def has_pause_route(server: ApiServer) -> bool:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    return any(p.startswith("/v1/campaigns/") and p.endswith("/pause") for p in paths)


def test_pause_stops_delivery_and_resume_restarts_it(
    browser: Any, server: ApiServer, smtpd_ui: RecordingSMTPServer, shots: Path
) -> None:
    if not has_pause_route(server):
        pytest.skip("POST /v1/campaigns/{id}/pause is not in this build (branch campaigns)")
    from selenium.webdriver.common.by import By

    post_campaign(server, "autumn", 60)
    browser.get(f"{server.url}/ui/campaigns/autumn")
    wait_for(lambda: sent_to(smtpd_ui, "autumn") >= 5, message="delivery under way")
    wait_for(lambda: browser.find_element(By.ID, "pause").is_enabled(), message="Pause enabled")
    browser.find_element(By.ID, "pause").click()
    assert "Pause autumn?" in confirm(browser)
    wait_for(lambda: "paused" in text(browser, "#held").lower(), message="shown paused")
    time.sleep(1.0)  # the messages in flight when it was paused land
    stopped = sent_to(smtpd_ui, "autumn")
    time.sleep(2.0)
    assert sent_to(smtpd_ui, "autumn") == stopped < 60  # nothing more reaches the server
    screenshot(browser, shots, "campaign-paused")
    wait_for(lambda: browser.find_element(By.ID, "resume").is_enabled(), message="Resume enabled")
    browser.find_element(By.ID, "resume").click()
    confirm(browser)
    wait_for(lambda: sent_to(smtpd_ui, "autumn") == 60, timeout=30, message="the rest sent")
    wait_for(lambda: number(browser, "#counts .count-sent dd") == 60, message="shown sent")


def test_retry_a_dead_letter_and_see_it_delivered(
    browser: Any, server: ApiServer, smtpd_ui: RecordingSMTPServer, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    gone = "gone@example.net"
    smtpd_ui.handler.rcpt_replies[gone] = "550 5.1.1 no such user"
    with server.client() as api:
        job = api.post("/v1/messages", json=message(to=gone, campaign="lost")).json()["id"]
        assert wait_final(api, job)["state"] == "dead"
    browser.get(f"{server.url}/ui/dead-letters?campaign=lost")
    wait_for(lambda: gone in text(browser, "#letters tbody"), message="the dead letter listed")
    assert "rejected_permanent" in text(browser, "#letters tbody")
    screenshot(browser, shots, "dead-letters")
    show = f'button[aria-label="Show the dead letter to {gone}"]'
    browser.find_element(By.CSS_SELECTOR, show).click()
    wait_for(lambda: "550 5.1.1" in text(browser, "#detail .transcript"), message="its replies")
    screenshot(browser, shots, "dead-letter")
    del smtpd_ui.handler.rcpt_replies[gone]  # the mailbox is back
    browser.find_element(By.CSS_SELECTOR, "#detail button:not(.danger)").click()
    assert "1 message" in confirm(browser)
    wait_for(lambda: delivered_to(smtpd_ui, gone), message="the retried letter delivered")
    with server.client() as api:
        assert wait_final(api, job)["state"] == "sent"
    wait_for(lambda: "No dead letter matches" in text(browser, "#letters tbody"), message="gone")


def test_the_suppression_list_and_the_message_lookup(
    browser: Any, server: ApiServer, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/ui/suppressions")
    browser.find_element(By.ID, "a-address").send_keys("blocked@example.com")
    browser.find_element(By.ID, "a-list").send_keys("news")
    browser.find_element(By.CSS_SELECTOR, "#add button").click()
    wait_for(lambda: "blocked@example.com" in text(browser, "#entries tbody"), message="added")
    browser.find_element(By.ID, "s-q").send_keys("blocked@")
    browser.find_element(By.CSS_SELECTOR, "#search button").click()
    wait_for(lambda: "starting with" in text(browser, "#entries-note"), message="searched")
    assert "news" in text(browser, "#entries tbody")
    screenshot(browser, shots, "suppressions")
    browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Remove blocked@example.com"]').click()
    assert "1 entry" in confirm(browser)
    wait_for(lambda: "No entry" in text(browser, "#entries tbody"), message="removed")
    browser.get(f"{server.url}/ui/messages?q=spring3@example.org")
    wait_for(lambda: "spring3@example.org" in text(browser, "#found"), message="found by address")
    assert "sent" in text(browser, "#found")
    screenshot(browser, shots, "messages")
