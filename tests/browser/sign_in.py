"""Signing in through Warden's authorization server in Debian's Chromium, driven by Selenium
through chromium-driver, as a person would: Warden sends the browser to the company IdP (the
development server, showing its own sign-in page), the person picks a user there, Warden shows
its consent page, the person allows, and the browser lands on the client's redirect URI with a
code. Started by tests/browser.rs (`signing_in_through_warden_in_chromium`).

Environment: AUTHORIZE (the client's authorization URL at Warden), REDIRECT (the client's
redirect URI), DECISION (allow or deny), SCREENSHOTS (where the pages' pictures go). Prints a JSON
report: the consent page's text and CSP, and the URL the browser ended at.
"""

import json
import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,800", "--no-first-run"):
    options.add_argument(arg)
service = Service(executable_path=os.environ.get("WARDEN_CHROMEDRIVER", "/usr/bin/chromedriver"))
browser = webdriver.Chrome(options=options, service=service)
shots = os.environ["SCREENSHOTS"]
report = {}
try:
    browser.get(os.environ["AUTHORIZE"])
    # The company IdP's own page: pick Alice.
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "button[value=alice]"))).click()
    # Warden's consent page.
    allow = WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "button[value=allow]")))
    report["consent_url"] = browser.current_url
    report["consent_text"] = browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(os.path.join(shots, "sign-in-consent.png"))
    if os.environ.get("DECISION", "allow") == "allow":
        allow.click()
    else:
        browser.find_element(By.CSS_SELECTOR, "button[value=deny]").click()
    WebDriverWait(browser, 15).until(lambda b: b.current_url.startswith(os.environ["REDIRECT"]))
    report["ended_at"] = browser.current_url
finally:
    browser.quit()
print(json.dumps(report))
