"""A call a person must approve, driven by the official Python MCP SDK.

Calls a tool an `approve` policy rule holds back; expects the gateway's URL-mode elicitation
(JSON-RPC error -32042 whose link is the request's status page), or the request as isError text
for revisions without URL elicitation; opens the status page the way a browser would; prints the
first answer as one JSON line and waits for a line on standard input (the test approves the
request meanwhile, as the approver); calls the tool again with the same arguments, and once more.
Prints one JSON report. Works with the SDK's 2.x API and its 1.x API.
"""

import argparse
import asyncio
import json
import re
import sys
import urllib.request
from importlib.metadata import version

from mcp import ClientSession

SDK_VERSION = version("mcp")
MAJOR = int(SDK_VERSION.split(".")[0])

if MAJOR >= 2:
    import httpx2 as httpx
    from mcp.client.streamable_http import streamable_http_client
else:
    from mcp.client.streamable_http import streamablehttp_client


def link_in_error(error) -> str | None:
    data = getattr(getattr(error, "error", None), "data", None) or {}
    for e in data.get("elicitations", []):
        if e.get("mode") == "url":
            return e["url"]
    return None


def dump(result) -> dict:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--args", required=True)
    opts = parser.parse_args()
    args = json.loads(opts.args)
    out = {"sdk_version": SDK_VERSION}

    async def session_flow(read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol_version"] = str(init.protocolVersion if hasattr(init, "protocolVersion") else init.protocol_version)
            try:
                first = dump(await session.call_tool(opts.tool, args))
                text = first.get("content", [{}])[0].get("text", "")
                found = re.search(r"request ([0-9a-f-]{36})", text, re.IGNORECASE)
                out["first"] = {"isError": first.get("isError"), "text": text, "id": found.group(1) if found else None}
            except Exception as e:  # the SDK raises the JSON-RPC error
                link = link_in_error(e)
                out["first"] = {"error_code": getattr(getattr(e, "error", None), "code", None), "link": link}
                if link:
                    out["first"]["id"] = link.rsplit("/", 1)[-1]
                    with urllib.request.urlopen(link) as page:
                        out["status_page"] = page.status
            print(json.dumps(out["first"]), flush=True)
            sys.stdin.readline()
            out["second"] = dump(await session.call_tool(opts.tool, args))
            try:
                out["third"] = dump(await session.call_tool(opts.tool, args))
            except Exception as e:
                out["third"] = {"error_code": getattr(getattr(e, "error", None), "code", None)}

    headers = {"Authorization": f"Bearer {opts.token}"}
    if MAJOR >= 2:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            async with streamable_http_client(opts.url, http_client=client) as streams:
                await session_flow(streams[0], streams[1])
    else:
        async with streamablehttp_client(opts.url, headers=headers) as (read, write, _):
            await session_flow(read, write)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
