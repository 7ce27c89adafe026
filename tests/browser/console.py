"""The admin console in Debian's Chromium, driven by Selenium through chromium-driver.

Started by tests/browser.rs (`the_admin_console_in_chromium`), which runs Warden, the
development authorization server (as the console's identity provider and as the provider of a
shared OAuth connection) and an MCP server whose tool definition has just changed. This script
plays the operator: signs in with the admin token and through the identity provider, previews
the tools as alice, creates an API key and uses it against /mcp, revokes it, connects the shared
connection, approves the changed definition after reading its diff, searches the audit log and
verifies its chain. It saves a screenshot of each page into $SCREENSHOTS and prints a JSON
report; any failed expectation exits non-zero with what the page showed.
"""

import json
import os
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["CONSOLE"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
SHOTS = os.environ["SCREENSHOTS"]
report = {}


def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("WARDEN_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--no-first-run"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("WARDEN_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def expect(condition, what):
    if not condition:
        raise AssertionError(f"{what}\n--- page {browser.current_url}\n{browser.find_element(By.TAG_NAME, 'body').text[:3000]}")


def shot(name):
    browser.save_screenshot(os.path.join(SHOTS, f"console-{name}.png"))


def wait_for(css):
    return WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def mcp_status(token):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    request = urllib.request.Request(
        BASE + "/mcp",
        data=body,
        headers={
            "Authorization": "Bearer " + token,
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def submit(form_css, **fields):
    form = browser.find_element(By.CSS_SELECTOR, form_css)
    for name, value in fields.items():
        element = form.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button").click()


browser = driver()
try:
    # Sign-in with the admin token: the bootstrap credential.
    browser.get(BASE + "/admin")
    wait_for("#token")
    expect(browser.current_url.endswith("/admin/sign-in"), "no session: the sign-in page")
    shot("sign-in")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for("#tools")
    expect("admin" in browser.find_element(By.CSS_SELECTOR, "nav .who").text, "signed in as the admin token")
    browser.find_element(By.ID, "sign-out").click()
    wait_for("#token")

    # Sign-in through the identity provider: its consent page, then back.
    browser.find_element(By.ID, "oidc-sign-in").click()
    wait_for("button[name=user][value=admin]").click()
    wait_for("#tools")
    who = browser.find_element(By.CSS_SELECTOR, "nav .who").text
    expect(who == "admin", f"signed in through the identity provider as admin, not {who!r}")
    report["oidc_sign_in"] = who

    # Tools, previewed as alice with the real policy.
    submit("#preview", **{"as": "alice", "roles": "analyst", "scopes": "calendar:read"})
    wait_for("td.yes")
    rows = {r.get_attribute("data-tool"): r.text for r in browser.find_elements(By.CSS_SELECTOR, "#tools tr[data-tool]")}
    expect("visible" in rows.get("echo", ""), f"alice sees echo: {rows}")
    expect("hidden" in rows.get("notes_me", ""), f"alice lacks notes:read: {rows}")
    report["withheld"] = sorted(k for k, v in rows.items() if "withheld from every caller" in v)
    report["preview"] = {k: ("visible" if "visible" in v else "hidden") for k, v in rows.items() if k not in report["withheld"]}
    shot("tools")

    # API keys: created (shown once), used against /mcp, revoked.
    browser.find_element(By.LINK_TEXT, "API keys").click()
    submit("#create-key", name="ci-nightly", subject="ci-bot", scopes="calendar:read", expires_in="30d")
    key = wait_for("#new-key").text
    expect(key.startswith("wdn_live_"), f"a key is shown: {key!r}")
    status, body = mcp_status(key)
    expect(status == 200, f"the key works against /mcp: {status}")
    report["key_tools"] = sorted(t["name"] for t in body["result"]["tools"])
    browser.get(BASE + "/admin/keys")
    expect(key not in browser.page_source, "the key is shown once")
    browser.find_element(By.CSS_SELECTOR, "button.revoke").click()
    browser.switch_to.alert.accept()
    wait_for("td.status-revoked")
    status, _ = mcp_status(key)
    expect(status == 401, f"a revoked key is refused: {status}")
    report["revoked_key_status"] = status
    report["revoked_key"] = key
    shot("api-keys")

    # The shared connection: Connect, the provider's consent page, back to Warden.
    browser.find_element(By.LINK_TEXT, "Connections").click()
    wait_for("#connect-notes").click()
    wait_for("#continue").click()
    wait_for("button[name=user][value=ops]").click()
    WebDriverWait(browser, 15).until(lambda b: "/oauth/callback" in b.current_url)
    expect("connected" in browser.find_element(By.TAG_NAME, "body").text.lower(), "the connect flow completed")
    browser.get(BASE + "/admin/connections")
    wait_for("td.status-healthy")
    report["connection"] = browser.find_element(By.CSS_SELECTOR, "section[data-credential=notes] td.status-healthy").text
    shot("connections")

    # The changed tool definition: read the diff, approve it.
    browser.find_element(By.LINK_TEXT, "Tool pins").click()
    diff = wait_for("section.pending pre.diff").text
    expect("evil.example" in diff and "+" in diff, f"the diff shows the change: {diff}")
    shot("approvals")
    browser.find_element(By.CSS_SELECTOR, "section.pending button.approve").click()
    wait_for("#none-pending")
    report["approved"] = True

    # Audit: search, then verify the chain.
    browser.find_element(By.LINK_TEXT, "Audit").click()
    submit("#search", subject="ci-bot")
    # The old page has #records too: wait for the new one.
    WebDriverWait(browser, 15).until(lambda b: "subject=ci-bot" in b.current_url)
    wait_for("#records")
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tr.decision-allow, #records tr.decision-deny")
    expect(len(rows) >= 1, f"the key's call is found: {len(rows)}")
    expect(all("ci-bot" in r.text for r in rows), "only ci-bot's records")
    report["audit_rows_for_ci_bot"] = len(rows)
    browser.find_element(By.ID, "verify").click()
    WebDriverWait(browser, 15).until(lambda b: "verify=1" in b.current_url)
    status = wait_for("#chain-status").text
    expect("verified" in status, f"the chain verifies: {status}")
    report["chain"] = status
    shot("audit")

    browser.find_element(By.LINK_TEXT, "Limits").click()
    wait_for("#usage")
    shot("limits")

    print(json.dumps(report))
except Exception:
    print(f"--- at {browser.current_url}\n{browser.find_element(By.TAG_NAME, 'body').text[:3000]}", file=sys.stderr)
    shot("failure")
    raise
finally:
    browser.quit()
