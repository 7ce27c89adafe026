"""A call a person must approve, on MCP 2026-07-28, driven by the official Python MCP SDK 2.x's
`Client` and its multi-round-trip driver: the gateway answers the held-back call with an
`InputRequiredResult` whose input request is a URL-mode elicitation (the approval's status
page); the SDK hands it to the elicitation callback, which prints the link as one JSON line and
waits for a line on standard input (the test approves meanwhile) before accepting; the SDK then
retries the call itself, which runs. Prints one JSON report.
"""

import argparse
import asyncio
import json
import sys
from importlib.metadata import version

import anyio
import httpx2 as httpx
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--args", required=True)
    opts = parser.parse_args()
    asked = []

    async def elicitation(context, params):
        url = getattr(params, "url", None)
        asked.append(url)
        print(json.dumps({"url": url}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        return types.ElicitResult(action="accept")

    headers = {"Authorization": f"Bearer {opts.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(opts.url, http_client=http)
        async with Client(transport, mode="2026-07-28", elicitation_callback=elicitation) as client:
            result = await client.call_tool(opts.tool, json.loads(opts.args))
    out = {
        "sdk_version": version("mcp"),
        "asked": asked,
        "result": result.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
