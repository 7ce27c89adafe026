#!/usr/bin/env node
// A headless stand-in for the person's browser during an OAuth sign-in: follows redirects with
// cookies (per host) through the authorization server's and the IdP's pages, allows Warden's
// consent page when it is shown, and stops at the first URL under `until` (or, without one, at
// the first page that neither redirects nor asks consent, such as a client's own callback page).
//
// As a module: `browse(url, { until, fetch })` returns the URL it stopped at.
// As a command (what $BROWSER names for clients that open a real browser, such as mcp-remote):
// `browser.mjs URL` browses to the end and exits 0.

/** A person's browser is slower than this one: a client that opens the browser before its own
 * callback server listens (FastMCP) is given up to 5 s to start it. */
async function patiently(attempt) {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      if (i >= 50 || e?.cause?.code !== "ECONNREFUSED") throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export async function browse(start, { until, fetch: fetchFn = fetch } = {}) {
  const jar = new Map();
  let url = start;
  let init = { redirect: "manual" };
  for (let i = 0; i < 15; i++) {
    if (until && url.startsWith(until)) return url;
    const host = new URL(url).host;
    const cookies = [...(jar.get(host) ?? new Map())].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await patiently(() => fetchFn(url, { ...init, headers: { ...(init.headers ?? {}), ...(cookies ? { cookie: cookies } : {}) } }));
    for (const c of response.headers.getSetCookie?.() ?? []) {
      const [pair] = c.split(";");
      const at = pair.indexOf("=");
      if (!jar.has(host)) jar.set(host, new Map());
      jar.get(host).set(pair.slice(0, at).trim(), pair.slice(at + 1));
    }
    const location = response.headers.get("location");
    if (location) {
      url = new URL(location, url).toString();
      init = { redirect: "manual" };
      continue;
    }
    const page = await response.text();
    const consent = page.match(/name=consent value="([^"]+)"/);
    const action = page.match(/<form method=post action="([^"]+)"/);
    if (!consent || !action) {
      if (until) throw new Error(`${url} answered ${response.status} without a redirect`);
      return url;
    }
    const unescape = (s) => s.replaceAll("&amp;", "&").replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
    url = new URL(unescape(action[1]), url).toString();
    init = {
      redirect: "manual",
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ consent: unescape(consent[1]), decision: "allow" }).toString(),
    };
  }
  throw new Error("too many redirects during authorization");
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv[2]) {
  if (process.env.WARDEN_BROWSER_TAB) {
    const end = await browse(process.argv[2]);
    console.error(`browser: stopped at ${end}`);
  } else {
    // Like a real browser, hand the page to a process of its own and return at once: a client
    // may wait for the opener to exit before it starts listening for the callback (Python's
    // webbrowser does).
    const { spawn } = await import("node:child_process");
    spawn(process.execPath, [process.argv[1], process.argv[2]], { detached: true, stdio: "inherit", env: { ...process.env, WARDEN_BROWSER_TAB: "1" } }).unref();
  }
}
