"""Drives the status page in headless Chromium (tests/ui.rs runs it).

Loads /ui, waits for the six PoP markers, drains fra1 through steerctl and
requires the page to show it drained within 2 s, writes light and dark
screenshots, then drains iad1 from the page with the keyboard (Enter on its
marker, the dry-run projection, a reason) and finds it in the audit log. Prints one JSON line with what it measured; exits non-zero with
the reason on any failure.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

MARKERS = "#markers circle[data-pop]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steerctl", required=True)
    ap.add_argument("--endpoint", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1400,1500",
                 "--hide-scrollbars", "--no-first-run"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    try:
        driver.set_page_load_timeout(20)
        driver.get(a.url)
        wait = WebDriverWait(driver, 10, poll_frequency=0.05)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, MARKERS)) == 6)
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#land path"))
        pops = sorted(m.get_attribute("data-pop")
                      for m in driver.find_elements(By.CSS_SELECTOR, MARKERS))
        driver.save_screenshot(os.path.join(a.out, "ui-before-drain.png"))

        started = time.monotonic()
        subprocess.run([a.steerctl, "--endpoint", a.endpoint, "drain", "pop", "fra1",
                        "--reason", "status page browser test"],
                       check=True, capture_output=True)
        drained = '#markers circle[data-pop="fra1"][data-drained="true"]'
        WebDriverWait(driver, 2, poll_frequency=0.02).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, drained))
        shown_after = time.monotonic() - started
        # The timeline row for the drain is there too (newest first).
        WebDriverWait(driver, 2, poll_frequency=0.05).until(
            lambda d: "fra1" in d.find_element(By.ID, "timeline").text)
        # Tall enough for the timeline below the tables.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1400, "height": 1800, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(0.3)
        driver.save_screenshot(os.path.join(a.out, "ui-light.png"))

        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        time.sleep(0.3)
        driver.save_screenshot(os.path.join(a.out, "ui-dark.png"))

        # Keyboard: every marker is in the tab order; Enter on one opens its
        # drain, which shows the dry-run projection before asking why.
        focusable = driver.execute_script(
            "return [...document.querySelectorAll('#markers circle')].every(c => c.tabIndex === 0)")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        driver.execute_script("document.querySelector('circle[data-pop=\"iad1\"]').focus()")
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        WebDriverWait(driver, 5, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "projection").text.startswith("Dry run:"))
        projection = driver.find_element(By.ID, "projection").text
        driver.save_screenshot(os.path.join(a.out, "ui-drain-dialog.png"))
        reason = driver.find_element(By.ID, "reason")
        reason.send_keys("drained from the status page")
        reason.send_keys(Keys.ENTER)
        WebDriverWait(driver, 3, poll_frequency=0.05).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#markers circle[data-pop="iad1"][data-drained="true"]'))
        audit = subprocess.run([a.steerctl, "--endpoint", a.endpoint, "audit"],
                               check=True, capture_output=True, text=True).stdout
        if "drained from the status page" not in audit:
            sys.exit("the page's drain is not in the audit log:\n" + audit)
        logs = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        print(json.dumps({"pops": pops, "drain_shown_after_s": round(shown_after, 3),
                          "markers_focusable": focusable, "projection": projection,
                          "console_errors": logs}))
        if logs:
            sys.exit("console errors: %s" % logs)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
