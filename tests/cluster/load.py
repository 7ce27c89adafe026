"""A fixed-rate load generator for scripts/fault-test: signs in once with the official Python
SDK (through the balancer) to get a real access token, then sends a fixed number of requests
per second for a fixed time, cycling through four kinds:

- allowed: tools/call of a tool the token may call (recorded with whether its result is an
  `isError`: the upstream's failure, answered as a tool error);
- denied: tools/call of a tool that needs a scope the token lacks (403 step-up);
- unauthenticated: no token (401);
- api_key: tools/list with a gateway-issued API key (checked against PostgreSQL on a miss).

Each request is sent on schedule whether or not earlier ones have answered (open loop), with a
5 s timeout. Prints one JSON object: every request's send time, kind, status (0 for no answer)
X-Request-Id and, for allowed calls, whether the result was a tool error.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
from python_client import MAJOR, REDIRECT_URI, Browser, MemoryStorage, httpx  # noqa: E402

from mcp import ClientSession  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.shared.auth import OAuthClientMetadata  # noqa: E402


async def sign_in(url):
    storage = MemoryStorage()
    browser = Browser()
    oauth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="warden-load", redirect_uris=[REDIRECT_URI], grant_types=["authorization_code"], response_types=["code"]
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    if MAJOR >= 2:
        from mcp.client.streamable_http import streamable_http_client

        async with httpx.AsyncClient(auth=oauth, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
    else:
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(url, auth=oauth) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
    return storage.tokens.access_token


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--ready", default=None, help="a file created once signed in, when the load starts")
    opts = parser.parse_args()
    token = await sign_in(opts.url)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    kinds = {
        "allowed": ({"Authorization": "Bearer " + token}, {"method": "tools/call", "params": {"name": "metadata", "arguments": {}}}),
        "denied": ({"Authorization": "Bearer " + token}, {"method": "tools/call", "params": {"name": "admin_only", "arguments": {}}}),
        "unauthenticated": ({}, {"method": "tools/list"}),
        "api_key": ({"Authorization": "Bearer " + opts.key}, {"method": "tools/list"}),
    }
    order = list(kinds)
    results = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=5, limits=limits) as http:

        async def one(i, at):
            kind = order[i % len(order)]
            extra, message = kinds[kind]
            body = dict(message, jsonrpc="2.0", id=i)
            status, request_id, tool_error = 0, None, False
            try:
                r = await http.post(opts.url, json=body, headers={**headers, **extra})
                status, request_id = r.status_code, r.headers.get("x-request-id")
                if status == 200 and kind == "allowed":
                    tool_error = bool(r.json().get("result", {}).get("isError"))
            except Exception:
                pass
            results.append({"t": round(at, 3), "kind": kind, "status": status, "request_id": request_id, "tool_error": tool_error})

        if opts.ready:
            open(opts.ready, "w").close()
        start = time.monotonic()
        tasks = []
        total = opts.rate * opts.seconds
        for i in range(total):
            at = i / opts.rate
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, at)))
        await asyncio.gather(*tasks)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
