"""The official Python MCP SDK as a client of Warden's federated tools.

Connects with a bearer token it is given (the OAuth flow itself is covered by python_client.py),
lists the tools, calls one, and prints a JSON report on its last line:
{"tools": [...], "result": {...}}. Works with the SDK's 2.x and 1.x APIs.
"""

import argparse
import asyncio
import json
import sys
from importlib.metadata import version

from mcp import ClientSession

MAJOR = int(version("mcp").split(".")[0])
if MAJOR >= 2:
    import httpx2 as httpx
    from mcp.client.streamable_http import streamable_http_client
else:
    import httpx
    from mcp.client.streamable_http import streamablehttp_client


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--args", default="{}")
    opts = parser.parse_args()
    out = {"sdk_version": version("mcp")}

    async def flow(read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            out["tools"] = [t.name for t in listed.tools]
            result = await session.call_tool(opts.tool, json.loads(opts.args))
            out["result"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)

    headers = {"Authorization": f"Bearer {opts.token}"}
    if MAJOR >= 2:
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(opts.url, http_client=http) as streams:
                await flow(streams[0], streams[1])
    else:
        async with streamablehttp_client(opts.url, headers=headers, timeout=60) as (read, write, _):
            await flow(read, write)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
