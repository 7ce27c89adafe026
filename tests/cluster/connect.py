"""A per-user OAuth connection, its refresh and a quota, across replicas behind the balancer.

Signs in as the test user with the official Python SDK (through the balancer), then:
1. calls a tool whose upstream needs the user's own connection: the gateway answers with a
   connect link (URL elicitation, -32042);
2. completes the link as a browser would, through the balancer: the flow starts on one
   replica and the provider sends the browser back to another (round robin; each hop's
   replica is read from the balancer's `X-Served-By`);
3. calls the tool again in the same SDK session: the stored token is used;
4. calls it on every replica directly: each one uses the same stored token;
5. once the token is inside its refresh window, calls it on every replica at once, several
   times each: every call succeeds and all use one new token (the provider rotates refresh
   tokens, so a second refresh by another replica would have failed);
6. calls a tool with a daily quota more times than the budget through the balancer.
Prints one JSON report for scripts/cluster-test to check.
"""

import argparse
import asyncio
import json
import time

from common import HEADERS, error_code, httpx, is_error, link_in, open_link, session, sign_in


async def call(http, url, token, tool, i):
    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
    r = await http.post(url, json=body, headers={**HEADERS, "Authorization": f"Bearer {token}"})
    result = r.json().get("result", {})
    text = "".join(c.get("text", "") for c in result.get("content", []))
    return {"status": r.status_code, "isError": bool(result.get("isError")), "token": json.loads(text).get("token") if text.startswith("{") else text}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the balancer's /mcp")
    parser.add_argument("--replica", action="append", required=True, help="each replica's /mcp")
    parser.add_argument("--tool", required=True, help="the tool that needs the user's connection")
    parser.add_argument("--refresh-after", type=float, required=True, help="seconds after connecting when the token is in its refresh window")
    parser.add_argument("--quota-tool", required=True)
    parser.add_argument("--quota-calls", type=int, required=True)
    opts = parser.parse_args()
    out = {}
    token = await sign_in(opts.url, "warden-cluster-connect")
    async with session(opts.url, token) as s:
        try:
            first = await s.call_tool(opts.tool, {})
            out["first"] = {"isError": is_error(first)}
            link = link_in(first.content[0].text if first.content else "")
        except Exception as e:  # the URL elicitation, as the SDK raises it
            out["first"] = {"error": error_code(e), "code": getattr(getattr(e, "error", None), "code", None)}
            link = link_in(e)
        if link is None:
            raise RuntimeError(f"no connect link: {out['first']}")
        out["hops"] = [[u.split("?")[0], status, served] for u, status, served in open_link(link)]
        connected = time.monotonic()
        second = await s.call_tool(opts.tool, {})
        out["second"] = {"isError": is_error(second), "token": json.loads(second.content[0].text).get("token")}
        async with httpx.AsyncClient(timeout=30) as http:
            out["replicas"] = [await call(http, url, token, opts.tool, i) for i, url in enumerate(opts.replica)]
            await asyncio.sleep(max(0.0, connected + opts.refresh_after - time.monotonic()))
            burst = [call(http, url, token, opts.tool, 100 + 10 * i + j) for j in range(3) for i, url in enumerate(opts.replica)]
            out["burst"] = await asyncio.gather(*burst)
        quota = {"ok": 0, "refused": {}}
        for i in range(opts.quota_calls):
            try:
                result = await s.call_tool(opts.quota_tool, {"n": i})
                code = "tool_error" if is_error(result) else None
            except Exception as e:
                code = error_code(e)
            if code is None:
                quota["ok"] += 1
            else:
                quota["refused"][code] = quota["refused"].get(code, 0) + 1
        out["quota"] = quota
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
