"""Headless Debian chromium through its chromedriver (Selenium), with axe-core injected for accessibility.

Nothing is downloaded: Selenium is given both paths, so Selenium Manager is never asked, and SE_OFFLINE is
set in case a later Selenium asks it anyway. scripts/test installs the two Debian packages when missing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
BLOCKING_IMPACTS = ("serious", "critical")
LAPTOP = (1280, 900)
HALF_SCREEN = (700, 900)


def start_chromium() -> webdriver.Chrome:
    """A headless chromium; fails loudly (naming the packages) when they are not installed."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver")
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    driver.implicitly_wait(0)
    return driver


def axe_source() -> str:
    """The vendored axe-core, checked against its recorded checksum."""
    content = AXE.read_bytes()
    assert hashlib.sha256(content).hexdigest() == AXE_SHA256, "tests/console/vendor/axe.min.js changed"
    return content.decode()


def blocking_violations(driver: webdriver.Chrome, source: str) -> list[dict[str, Any]]:
    """axe-core's violations of serious or critical impact on the page now shown (WCAG 2.x A and AA, and
    axe's best practices)."""
    driver.execute_script(source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations)).catch(e => done({error: String(e)}));"
    )
    assert isinstance(result, list), result
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result
        if v.get("impact") in BLOCKING_IMPACTS
    ]


def overflows_horizontally(driver: webdriver.Chrome) -> bool:
    """Whether the page is wider than the window (a horizontal scroll bar)."""
    return bool(driver.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1;"))
