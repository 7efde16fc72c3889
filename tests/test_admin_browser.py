"""The Django admin, in a real browser: entries can be told apart, searched, and not
changed or deleted.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, installed by .ci/run)
driven by Selenium, against a Django project served on 127.0.0.1 by a real process,
logged in as a superuser. Screenshots go to ``test-artifacts/`` at the top of the
checkout. Skipped, saying why, where the browser or Selenium is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import TESTS_DIR, subprocess_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = TESTS_DIR.parent / "test-artifacts"

pytestmark = [
    pytest.mark.slow,  # a Django server and a browser
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Chromium and ChromeDriver (Debian: apt-get install chromium chromium-driver)",
    ),
    # one test process runs them all (``--dist loadgroup``): one server, one browser
    pytest.mark.xdist_group("browser"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("admin")
    process = subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "admin_server.py"), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "ready":
            process.kill()
            pytest.fail(f"the Django project did not start: {process.communicate()[1][-3000:]}")
        yield f"http://127.0.0.1:{line[1]}"
    finally:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        driver.get(f"{server}/admin/login/")
        driver.find_element("name", "username").send_keys("admin")
        driver.find_element("name", "password").send_keys("admin-password")
        driver.find_element("css selector", "input[type=submit]").click()
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_the_list_tells_entries_apart(server: str, browser: Any) -> None:
    browser.get(f"{server}/admin/adatastore/dataitem/")
    screenshot(browser, "admin-list")
    page = browser.page_source
    assert "tau_m" in page  # the parameters are shown
    assert "rate_hz" in page
    assert "components.SimpleComponent" in page
    assert page.count("rates") >= 2
    # read-only: no add button, no bulk delete action
    assert "/admin/adatastore/dataitem/add/" not in page
    assert "delete_selected" not in page


def test_search_looks_at_parameters(server: str, browser: Any) -> None:
    browser.get(f"{server}/admin/adatastore/dataitem/?q=rate_hz")
    screenshot(browser, "admin-search")
    rows = browser.find_elements("css selector", "#result_list tbody tr")
    assert len(rows) == 1
    assert "spikes" in rows[0].text


def test_the_detail_page_shows_parameters_and_inputs_and_cannot_delete(
    server: str, browser: Any
) -> None:
    browser.get(f"{server}/admin/adatastore/dataitem/?q=threshold")
    browser.find_element("css selector", "#result_list tbody tr th a").click()
    screenshot(browser, "admin-detail")
    page = browser.page_source
    assert '"threshold": -50.0' in page  # pretty JSON
    assert "inputs" in page
    assert page.count("components.SimpleComponent") >= 2  # its type, and its input's
    assert "stored" in page  # the provenance: stored <time> by <user>@<host>
    assert "deletelink" not in page
    assert browser.find_elements("css selector", "input[type=submit][name=_save]") == []


def test_deleting_by_url_is_refused(server: str, browser: Any) -> None:
    browser.get(f"{server}/admin/adatastore/dataitem/1/delete/")
    assert "403" in browser.title or "Forbidden" in browser.page_source
