"""FastMCP 4's client (the standalone `fastmcp` package) signs in through Warden with its OAuth
helper: registration, the browser (Python's webbrowser, which runs $BROWSER: the test names
browser.mjs, a headless stand-in that goes through the IdP and Warden's consent to FastMCP's own
callback server), the code exchange; then it lists the tools and calls one.

Usage: fastmcp_client.py URL TOOL. Prints one JSON report: fastmcp version, tools, the result.
"""

import asyncio
import json
import sys

import fastmcp
from fastmcp import Client
from fastmcp.client.auth import OAuth


async def main() -> int:
    url, tool = sys.argv[1], sys.argv[2]
    async with Client(url, auth=OAuth(url, client_name="warden-interop-fastmcp", callback_timeout=60)) as client:
        tools = [t.name for t in await client.list_tools()]
        result = await client.call_tool(tool, {}, raise_on_error=False)
    print(json.dumps({"fastmcp_version": fastmcp.__version__, "tools": tools, "is_error": result.is_error, "structured": result.structured_content}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
