"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``) driven by
Selenium, for the dashboard's tests (tests/ui), and what they do with it: sign in, wait
for a figure, take a screenshot.

Selenium is given the driver and the browser by path, so Selenium Manager never looks
for (or downloads) either. A missing browser skips the tests locally and fails them
under CI (scripts/services.sh installs both).

Screenshots go to pytest's temporary folder; with ``MAILSPOOL_SCREENSHOTS=docs`` they
replace the pictures of docs/dashboard.md (docs/img/dashboard-*.png).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.paths import ROOT
from tests.support.services import need

CHROMIUM = Path(os.environ.get("MAILSPOOL_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MAILSPOOL_CHROMEDRIVER", "/usr/bin/chromedriver"))
DOCS_IMG = ROOT / "docs" / "img"
WIDE = (1280, 860)
PHONE = (390, 844)
#: the longest a page is captured (a screenshot of a long table stays small)
MAX_HEIGHT = 2000
T = TypeVar("T")


def chromium_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def start_chromium(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        "--lang=en-GB",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (one per test module: starting one takes a second)."""
    what = f"Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}) with selenium"
    need(chromium_available(), what)
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the test's screenshots go (see the module docstring)."""
    if os.environ.get("MAILSPOOL_SCREENSHOTS") == "docs":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path


def screenshot(driver: Any, folder: Path, name: str, size: tuple[int, int] = WIDE) -> Path:
    """The page at ``size`` (width, and at least that height: the whole page up to
    MAX_HEIGHT) as ``folder/dashboard-NAME.png``; a width under 500 is a phone's."""
    width, height = size
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    full = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics["height"] = min(max(height, full), MAX_HEIGHT)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)  # a relayout
    path = folder / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def wait_for(what: Callable[[], T | None], timeout: float = 20, message: str = "") -> T:
    """Poll ``what`` until it gives something true (the bound only keeps a broken run
    from hanging)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = what()
            if got:
                return got
        except Exception as exc:  # a page being rebuilt: its element is gone for a moment
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting: {message} (last error: {last})")


def sign_in(driver: Any, url: str, token: str, path: str = "/ui/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}{path}")
    wait_for(lambda: "/ui/login" in driver.current_url, message="the login form")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(lambda: "/ui/login" not in driver.current_url, message="signed in")


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def number(driver: Any, css: str) -> int:
    """The number an element shows (``1,234`` -> 1234)."""
    digits = re.sub(r"[^0-9]", "", text(driver, css))
    return int(digits) if digits else 0


def confirm(driver: Any) -> str:
    """Accept the confirmation dialog; its question."""
    from selenium.webdriver.common.by import By

    dialog = wait_for(
        lambda: next(iter(driver.find_elements(By.CSS_SELECTOR, "dialog[open]")), None),
        message="the confirmation dialog",
    )
    question = str(dialog.find_element(By.ID, "confirm-text").text)
    dialog.find_element(By.ID, "confirm-ok").click()
    return question
