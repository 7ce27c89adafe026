"""One official-SDK client through the load balancer: signs in once (the whole OAuth flow,
through whichever replica HAProxy picks for each request), then calls a tool N times in one
session. Prints how many calls succeeded and how many were refused as rate limited, by code.
Used by scripts/cluster-test."""

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
from python_client import MAJOR, REDIRECT_URI, Browser, MemoryStorage, httpx  # noqa: E402

from mcp import ClientSession  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.shared.auth import OAuthClientMetadata  # noqa: E402


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--calls", type=int, default=40)
    opts = parser.parse_args()
    browser = Browser()
    oauth = OAuthClientProvider(
        server_url=opts.url,
        client_metadata=OAuthClientMetadata(
            client_name="warden-cluster-test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    out = {"ok": 0, "refused": {}, "tools": []}

    async def flow(read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            out["tools"] = [t.name for t in (await session.list_tools()).tools]
            for i in range(opts.calls):
                try:
                    result = await session.call_tool(opts.tool, {"n": i})
                    if result.isError if hasattr(result, "isError") else result.is_error:
                        out["refused"]["tool_error"] = out["refused"].get("tool_error", 0) + 1
                    else:
                        out["ok"] += 1
                except Exception as e:  # an MCP error: its data.code says which
                    data = getattr(getattr(e, "error", None), "data", None) or {}
                    code = data.get("code", type(e).__name__) if isinstance(data, dict) else type(e).__name__
                    out["refused"][code] = out["refused"].get(code, 0) + 1

    if MAJOR >= 2:
        from mcp.client.streamable_http import streamable_http_client

        async with httpx.AsyncClient(auth=oauth, timeout=30) as http:
            async with streamable_http_client(opts.url, http_client=http) as streams:
                await flow(streams[0], streams[1])
    else:
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(opts.url, auth=oauth) as (read, write, _):
            await flow(read, write)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
