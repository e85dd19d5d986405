"""A hostile log line in a real browser: names that are Markdown, HTML and links stay text.

Anyone who can write a log line controls principal, resource and grantee names and event
attributes. They are planted here with links, images (tracking beacons), raw HTML and
Streamlit directives pointing at a real HTTP server on 127.0.0.1 standing in for the
attacker; headless Chromium opens the queue and every tab of the incident, and the test
checks that no link or image to that server is in the page and that no request reached it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import free_port, ingest_rows, iso
from test_browser import ROOT, _browser, _wait_healthy, chrome

from blastwall.access import add_account
from blastwall.schema import init_schema
from blastwall.store import close_store, open_store
from detector.incidents import Alert, record_alert

pytestmark = pytest.mark.slow


def _hostile(attacker: str) -> dict[str, str]:
    return {
        "principal": f"[click me]({attacker}/link) ![x]({attacker}/beacon.png)",
        "resource": f"<img src='{attacker}/html.png'> **ds**.{attacker}/auto",
        "grantee": f":red[all-staff] $x$ <a href='{attacker}/a'>staff</a>",
        "attribute": f"![y]({attacker}/attr.png)",
    }


def test_names_from_logs_render_as_text_and_fetch_nothing(tmp_path: Path, receiver) -> None:
    browser, driver_path = _browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    attacker = receiver.url("").rstrip("/")
    bad = _hostile(attacker)
    now = datetime.now(UTC)
    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    try:
        init_schema(client)
        ingest_rows(client, tmp_path, "access_log", [
            {"event_time": iso(now - timedelta(minutes=50)), "event_id": "e1", "principal": bad["principal"],
             "action": "grant", "resource": bad["resource"], "grantee": bad["grantee"],
             "attributes": {"note": bad["attribute"]}},
            {"event_time": iso(now - timedelta(minutes=45)), "event_id": "e2", "principal": bad["grantee"],
             "action": "read", "resource": bad["resource"], "attributes": {"note": bad["attribute"]}}])
        record_alert(client, Alert(
            alert_id="hostile", detector="permission_fanout", entity="grant",
            entity_key=f"{bad['resource']} -> {bad['grantee']}",
            title=f"{bad['principal']} granted {bad['resource']} to {bad['grantee']}", severity="SEV1", score=1.0,
            principals=(bad["principal"],), resources=(bad["resource"],), first_seen=now - timedelta(minutes=50),
            last_seen=now - timedelta(minutes=45), detected_at=now - timedelta(minutes=40),
            explanation=[{"feature": "audience_gain", "value": 5, "baseline": 0, "weight": 1.0},
                         {"rule": "grant.mass_audience", "severity_points": {},
                          "grant": {"resource": bad["resource"], "grantee": bad["grantee"]}}]))
    finally:
        close_store(client)
    accounts = tmp_path / "accounts.yaml"
    add_account(accounts, "ana", "analyst", "s3cret-pass", name=bad["principal"])

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--no-scheduler"],
        env={**os.environ, "BLASTWALL_DSN": dsn, "BLASTWALL_ACCOUNTS": str(accounts)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    artifacts = Path(os.environ.get("BLASTWALL_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = None
    seen: list[str] = []
    try:
        _wait_healthy(url, console)
        driver = chrome(browser, driver_path)
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label='User']"))).send_keys("ana")
        driver.find_element(By.CSS_SELECTOR, "input[aria-label='Password']").send_keys("s3cret-pass")
        driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., 'Queue')]")))
        seen.append(driver.page_source)
        wait.until(ready.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Open']]"))).click()
        # The title is the planted text, shown literally (brackets, parentheses and all).
        wait.until(ready.presence_of_element_located((By.XPATH, "//h1[contains(., '[click me](')]")))
        for tab in ("Why", "Evidence", "Blast radius", "Timeline", "Respond"):
            wait.until(ready.element_to_be_clickable((By.XPATH, f"//*[@role='tab' and contains(., '{tab}')]"))).click()
            driver.implicitly_wait(1)
            seen.append(driver.page_source)
            if tab == "Why":
                driver.save_screenshot(str(artifacts / "console-hostile-incident.png"))
        for page in ("Overview", "Playbooks"):
            wait.until(ready.element_to_be_clickable((By.XPATH, f"//a[contains(., '{page}')]"))).click()
            wait.until(ready.presence_of_element_located((By.XPATH, f"//h1[contains(., '{page}')]")))
            seen.append(driver.page_source)
        driver.save_screenshot(str(artifacts / "console-hostile-names.png"))

        links = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
        images = [i.get_attribute("src") or "" for i in driver.find_elements(By.TAG_NAME, "img")]
    except Exception:
        if driver is not None:
            driver.save_screenshot(str(artifacts / "console-hostile-failure.png"))
        raise
    finally:
        if driver is not None:
            driver.quit()
        console.terminate()
        console.wait(timeout=30)

    assert receiver.requests == [], [r.path for r in receiver.requests]  # no beacon, no prefetch
    assert not [link for link in links if attacker in link]
    assert not [image for image in images if attacker in image]
    for page in seen:  # no element anywhere in any view pointed at the attacker
        assert f'href="{attacker}' not in page and f'src="{attacker}' not in page
