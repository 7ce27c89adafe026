"""A federated server's multi round-trip request (SEP-2322), through Warden, driven by the
official Python MCP SDK 2.x's `Client`: the tool asks the user (elicitation), the client's model
(sampling) and the client's roots at once. On MCP 2026-07-28 (`--mode 2026-07-28`) the SDK hands
each request to its callback and retries the call with the answers and the state Warden gave it,
until the result; on 2025-11-25 (`--mode legacy`: the initialize handshake) Warden sends each
request to the client on the call's stream, the SDK's callbacks answer, and the one call ends
with the result. Prints one JSON report: what each callback was asked, and the result.
"""

import argparse
import asyncio
import json
import sys
from importlib.metadata import version

import httpx2 as httpx
from mcp import types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--mode", default="2026-07-28")
    opts = parser.parse_args()
    asked = {"elicitation": [], "sampling": [], "roots": 0}

    async def elicitation(context, params):
        asked["elicitation"].append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Alice"})

    async def sampling(context, params):
        asked["sampling"].append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="Hello there"), model="test-model")

    async def roots(context):
        asked["roots"] += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    headers = {"Authorization": f"Bearer {opts.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(opts.url, http_client=http)
        async with Client(
            transport,
            mode=opts.mode,
            elicitation_callback=elicitation,
            sampling_callback=sampling,
            list_roots_callback=roots,
        ) as client:
            result = await client.call_tool(opts.tool, {})
    out = {"sdk_version": version("mcp"), "asked": asked, "result": result.model_dump(by_alias=True, mode="json", exclude_none=True)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
