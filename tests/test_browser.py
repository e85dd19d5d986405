"""One real-browser test: headless Chromium signs in, opens the top incident, acknowledges it.

The console runs as its own process (``streamlit run``) on a real embedded store; Selenium
drives Debian's ``chromium`` through ``chromedriver``. When either is missing, the test
installs them with apt-get (``chromium``, ``chromium-driver``) — CI has no other way to get
a browser — and fails, never skips, if that is impossible. The screenshot goes to
``$BLASTWALL_ARTIFACTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import free_port

from blastwall.access import add_account
from blastwall.schema import init_schema
from blastwall.simulation import OrgSpec, write_to_store
from blastwall.store import close_store, open_store
from detector.incidents import Alert, get_incident, incident_timeline, record_alert

#: A console process and a browser: outside the fast subset (``-m "not slow"``), still in CI.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when missing."""
    def found() -> tuple[str | None, str | None]:
        return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")

    browser, driver = found()
    if browser and driver:
        return browser, driver
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"]):
        done = subprocess.run(sudo + command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"cannot install chromium for the browser test ({' '.join(command)}): {done.stderr[-500:]}")
    browser, driver = found()
    if not (browser and driver):
        pytest.fail("apt-get ran but chromium/chromedriver are still missing")
    return browser, driver


def chrome(browser: str, driver_path: str):  # noqa: ANN201 - selenium is imported lazily
    """Headless Chromium driven by chromedriver, with no traffic of its own (background networking off)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the console exited: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the console did not become healthy")


def test_sign_in_open_the_top_incident_and_acknowledge_it(tmp_path: Path) -> None:
    browser, driver_path = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    now = datetime.now(UTC)
    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    try:
        init_schema(client)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        write_to_store(client, OrgSpec(principals=60, days=5, start=midnight - timedelta(days=5)))
        person = client.query("SELECT principal FROM principals FINAL WHERE principal_type = 'human'"
                              " ORDER BY principal LIMIT 1").result_rows[0][0]
        top = record_alert(client, Alert(
            alert_id="browser-top", detector="runaway_agent", entity="principal", entity_key="agent-x",
            title="agent-x: 900 operations over 400 resources", severity="SEV1", score=0.9999,
            principals=("agent-x",), resources=(), first_seen=now - timedelta(hours=1),
            last_seen=now - timedelta(minutes=30), detected_at=now - timedelta(minutes=20))).incident_id
        record_alert(client, Alert(
            alert_id="browser-other", detector="bulk_export", entity="principal", entity_key=person,
            title=f"{person} exported 2 GB", severity="SEV3", score=0.99, principals=(person,), resources=(),
            first_seen=now - timedelta(hours=1), last_seen=now, detected_at=now))
    finally:
        close_store(client)
    accounts = tmp_path / "accounts.yaml"
    add_account(accounts, "ana", "analyst", "s3cret-pass", name="Ana Analyst")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer", "--",
         "--no-scheduler"],
        env={**os.environ, "BLASTWALL_DSN": dsn, "BLASTWALL_ACCOUNTS": str(accounts)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    artifacts = Path(os.environ.get("BLASTWALL_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = None
    try:
        _wait_healthy(url, console)
        driver = chrome(browser, driver_path)
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User']"))).send_keys("ana")
        driver.find_element(By.CSS_SELECTOR, "input[aria-label='Password']").send_keys("s3cret-pass")
        driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'Queue')]")))
        wait.until(ready.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Open']]"))).click()
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'agent-x: 900 operations')]")))
        wait.until(ready.element_to_be_clickable((By.XPATH, "//*[@role='tab' and contains(., 'Respond')]"))).click()
        wait.until(ready.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Acknowledge']]"))).click()
        wait.until(ready.presence_of_element_located((By.XPATH, "//*[contains(text(), 'acknowledged: done')]")))
        shot = artifacts / "console-acknowledged.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    except Exception:
        if driver is not None:
            driver.save_screenshot(str(artifacts / "console-failure.png"))
        raise
    finally:
        if driver is not None:
            driver.quit()
        console.terminate()
        console.wait(timeout=30)

    client = open_store(dsn)
    try:
        assert get_incident(client, top)["status"] == "acknowledged"
        last = incident_timeline(client, top)[-1]
        assert (last["action"], last["actor"]) == ("acknowledge", "ana")
    finally:
        close_store(client)
