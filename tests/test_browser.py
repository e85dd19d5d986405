"""One real-browser test: headless Chromium walks the analyst's path, from sign-in to an approved containment.

The console runs as its own process (``streamlit run``) on a real embedded store; Selenium
drives Debian's ``chromium`` through ``chromedriver``. When either is missing, the test
installs them with apt-get (``chromium``, ``chromium-driver``) — CI has no other way to get
a browser — and fails, never skips, if that is impossible. The screenshots go to
``$BLASTWALL_ARTIFACTS`` (default: the test's temporary folder; ``docs/screenshots/`` holds the
ones the README shows: ``BLASTWALL_ARTIFACTS=docs/screenshots pytest tests/test_browser.py``).
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


def _shot(driver, folder: Path, name: str, top: bool = False) -> None:  # noqa: ANN001 - a selenium driver
    """A screenshot of the page as it is now, or of its top (the walk's screenshots go to docs/screenshots/)."""
    time.sleep(1.0)  # let Streamlit finish painting what it just received
    if top:
        from selenium.webdriver.common.by import By

        driver.execute_script("arguments[0].scrollIntoView(true);", driver.find_element(By.TAG_NAME, "h1"))
        time.sleep(0.3)
    shot = folder / name
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_analysts_path_from_sign_in_to_an_approved_containment(tmp_path: Path) -> None:
    """Sign in, open the top incident, read the four answers, open the actor's page, acknowledge,
    note, approve the pending containment step, and see its outcome (issue 17)."""
    browser, driver_path = _browser()
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from blastwall.config import load_settings

    now = datetime.now(UTC)
    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    try:
        init_schema(client)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        write_to_store(client, OrgSpec(principals=60, days=5, start=midnight - timedelta(days=5)))
        person = client.query("SELECT principal FROM principals FINAL WHERE principal_type = 'human'"
                              " ORDER BY principal LIMIT 1").result_rows[0][0]
        embedding = client.query("SELECT resource FROM resources FINAL WHERE kind = 'embedding'"
                                 " ORDER BY resource LIMIT 1").result_rows[0][0]
        top = record_alert(client, Alert(
            alert_id="browser-top", detector="bulk_export", entity="principal", entity_key=person,
            title=f"{person} exported 41 GB of embeddings to an unknown destination", severity="SEV2",
            score=0.99999, principals=(person,), resources=(embedding,), first_seen=now - timedelta(hours=2),
            last_seen=now - timedelta(minutes=40), detected_at=now - timedelta(minutes=30),
            explanation=[{"feature": "bytes_exported", "value": 4.1e10, "baseline": 1.2e8, "weight": 0.7},
                         {"feature": "exports", "value": 38, "baseline": 2, "weight": 0.3},
                         {"severity_points": {"evidence": 3, "data": 2, "blast_radius": 0, "actor": 0}}])).incident_id
        record_alert(client, Alert(
            alert_id="browser-other", detector="runaway_agent", entity="principal", entity_key="agent-x",
            title="agent-x: 900 operations over 400 resources", severity="SEV3", score=0.99,
            principals=("agent-x",), resources=(), first_seen=now - timedelta(hours=1), last_seen=now,
            detected_at=now))
        # The respond job already ran: below SEV1 its containment step waits for a person's approval.
        load_settings(None).responder(client).run("embedding_export", top, now, "blastwall")
    finally:
        close_store(client)
    accounts = tmp_path / "accounts.yaml"
    add_account(accounts, "ana", "responder", "s3cret-pass", name="Ana Responder")

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

    def press(locator: tuple[str, str]) -> None:
        # Streamlit's sticky header covers the page's top strip: centre the element before clicking it,
        # and try again if a rerun moved it under something between the scroll and the click.
        for attempt in range(5):
            element = wait.until(ready.element_to_be_clickable(locator))
            try:
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
                element.click()
                return
            except (ElementClickInterceptedException, StaleElementReferenceException):
                if attempt == 4:
                    raise
                time.sleep(0.5)  # a rerun replaced or moved the element: find it again

    def button(label: str) -> None:
        press((By.XPATH, f"//button[.//p[text()='{label}']]"))

    def shown(text: str) -> None:
        # Markdown splits a line into several text nodes (at escaped characters): match whole paragraphs.
        wait.until(ready.presence_of_element_located(
            (By.XPATH, f"//*[(self::p or self::li) and contains(normalize-space(.), \"{text}\")]"
                       f" | //*[contains(text(), \"{text}\")]")))

    try:
        _wait_healthy(url, console)
        driver = chrome(browser, driver_path)
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User']"))).send_keys("ana")
        driver.find_element(By.CSS_SELECTOR, "input[aria-label='Password']").send_keys("s3cret-pass")
        button("Sign in")
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'Queue')]")))
        shown("INC-1")
        _shot(driver, artifacts, "01-queue.png")

        button("Open")
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'exported 41 GB')]")))
        for answer in ("What happened", "How bad it is", "What was already done", "What to do next"):
            shown(answer)
        shown("waits for approval to")
        shown("bytes exported: 41 GB; normally 120 MB")
        _shot(driver, artifacts, "02-incident-four-answers.png", top=True)

        press((By.XPATH, f"//a[contains(., '{person.split('@')[0]}')]"))
        wait.until(ready.presence_of_element_located((By.XPATH, f"//h1[contains(., '{person.split('@')[0]}')]")))
        _shot(driver, artifacts, "03-principal-page.png")
        driver.back()
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'exported 41 GB')]")))

        button("Acknowledge")
        shown("acknowledged: done")
        press((By.XPATH, "//*[contains(., 'Assign, note, false positive')]/ancestor-or-self::summary"))
        note = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "textarea[aria-label='Note']")))
        note.send_keys("Export destination is not ours; approving the suspension.")
        button("Add note")
        shown("noted: done")
        assert note.get_attribute("value") == ""  # the note was used up; the page kept its place
        _shot(driver, artifacts, "04-acknowledged-and-noted.png")

        button("Approve suspend_identity")
        shown("approved suspend_identity: done")
        shown(f"suspended {person.split('@')[0]}")  # names are shown as text: a zero-width space breaks "@"
        _shot(driver, artifacts, "05-approved-contained.png", top=True)

        # A link someone shared (a page, a chat message) opens its page once the reader has signed in.
        driver.delete_all_cookies()
        driver.get(f"{url}/incident?id=INC-1")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User']"))).send_keys("ana")
        driver.find_element(By.CSS_SELECTOR, "input[aria-label='Password']").send_keys("s3cret-pass")
        button("Sign in")
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'exported 41 GB')]")))
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
        incident = get_incident(client, top)
        assert incident["status"] == "contained"
        trail = [(e["action"], e["actor"]) for e in incident_timeline(client, top)]
        assert ("acknowledge", "ana") in trail and ("note", "ana") in trail
        assert trail[-1][0] == "contain"
    finally:
        close_store(client)
