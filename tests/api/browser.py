"""Headless Chromium for the viewer tests: Debian's ``chromium`` and ``chromium-driver``
(``scripts/install dev`` installs them), driven by selenium with both executables named, so
selenium-manager never downloads a browser or a driver.

Missing browser: the test FAILS with what to install, unless ``TWIN_SKIP_BROWSER_TESTS=1``
says on purpose that this machine runs without one (then it is skipped).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Screenshots and browser logs of the viewer tests (git-ignored).
ARTIFACTS = REPO / "test-artifacts" / "viewer"
SKIP_ENV = "TWIN_SKIP_BROWSER_TESTS"


def _executable(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


def browser_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)``; fails the test (or skips it when opted out) if either is missing."""
    chromium = _executable("chromium", "chromium-browser")
    driver = _executable("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p)
    reason = (f"the viewer's browser test needs {missing}: run `scripts/install dev` as root (it installs the Debian "
              f"packages chromium and chromium-driver) or set {SKIP_ENV}=1 to skip it on purpose")
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(reason)
    pytest.fail(reason, pytrace=False)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile and its console log readable."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("selenium is not installed: run `scripts/install dev`", pytrace=False)
    binary, driver_path = browser_paths()
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch anything
    with tempfile.TemporaryDirectory(prefix="twin-chromium-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = binary
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                     f"--window-size={width},{height}"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver: Any, name: str, element: Any = None, *, viewport: bool = False) -> Path:
    """Save the whole page, ``element``, or what the window shows (``viewport``) as
    ``test-artifacts/viewer/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if viewport:  # a window's worth, scrolled to ``element``
        driver.set_window_size(1280, 900)
        if element is not None:
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
        driver.get_screenshot_as_file(str(path))
        return path
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    driver.set_window_size(max(1280, width), min(max(900, height + 40), 6000))
    (element or driver.find_element("tag name", "body")).screenshot(str(path))
    return path
