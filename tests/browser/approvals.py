"""The console's Call approvals page in Debian's Chromium, driven by Selenium through
chromium-driver: sign in with the admin token, open Call approvals, read the waiting request
(its secret argument redacted), write a comment and approve it. Started by tests/browser.rs
(`approving_a_call_in_the_console_in_chromium`). Environment: CONSOLE (the gateway's base URL),
ADMIN_TOKEN, SCREENSHOTS. Prints a JSON report.
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
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--no-first-run"):
    options.add_argument(arg)
service = Service(executable_path=os.environ.get("WARDEN_CHROMEDRIVER", "/usr/bin/chromedriver"))
browser = webdriver.Chrome(options=options, service=service)
base = os.environ["CONSOLE"]
report = {}
wait = WebDriverWait(browser, 15)
try:
    browser.get(base + "/admin")
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(os.environ["ADMIN_TOKEN"])
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ec.presence_of_element_located((By.ID, "tools")))
    browser.find_element(By.LINK_TEXT, "Call approvals").click()
    card = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section[data-approval]")))
    report["card"] = card.text
    report["id"] = card.get_attribute("data-approval")
    browser.save_screenshot(os.path.join(os.environ["SCREENSHOTS"], "console-call-approvals.png"))
    card.find_element(By.NAME, "comment").send_keys("ok by phone")
    card.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    report["done"] = wait.until(ec.presence_of_element_located((By.ID, "done"))).text
    report["left"] = browser.find_element(By.TAG_NAME, "main").text
finally:
    browser.quit()
print(json.dumps(report))
