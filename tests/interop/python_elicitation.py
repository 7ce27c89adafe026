"""A per-user upstream connection, driven by the official Python MCP SDK.

Calls a tool whose upstream OAuth connection the caller has not made; expects the gateway's
URL-mode elicitation (JSON-RPC error -32042, or the link as isError text for revisions without
URL elicitation); completes the connect flow the way a browser would (link -> provider ->
callback, carrying the binding cookie); calls the tool again. Prints one JSON report.
Works with the SDK's 2.x API and its 1.x API.
"""

import argparse
import asyncio
import http.cookiejar
import json
import re
import sys
import urllib.error
import urllib.parse
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


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def open_link(link: str, account: str) -> int:
    """The user's browser: follows redirects with cookies; signs in at the provider as `account`."""
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url = link
    for _ in range(5):
        request = urllib.request.Request(url, headers={"x-account": account})
        try:
            return opener.open(request).status
        except urllib.error.HTTPError as e:
            if e.code not in (302, 303):
                return e.code
            url = urllib.parse.urljoin(url, e.headers["Location"])
    raise RuntimeError("too many redirects")


def link_in_error(error) -> str | None:
    data = getattr(getattr(error, "error", None), "data", None) or {}
    for e in data.get("elicitations", []):
        if e.get("mode") == "url":
            return e["url"]
    return None


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--account", required=True)
    opts = parser.parse_args()
    out = {"sdk_version": SDK_VERSION}

    async def session_flow(read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol_version"] = str(init.protocolVersion if hasattr(init, "protocolVersion") else init.protocol_version)
            link = None
            try:
                first = await session.call_tool(opts.tool, {})
                text = first.content[0].text if first.content else ""
                out["first"] = {"isError": first.isError if hasattr(first, "isError") else first.is_error, "text": text}
                found = re.search(r"https?://\S+/oauth/connect/[A-Za-z0-9_-]+", text)
                link = found.group(0) if found else None
            except Exception as e:  # the SDK raises the JSON-RPC error
                out["first"] = {"error_code": getattr(getattr(e, "error", None), "code", None), "error_type": type(e).__name__}
                link = link_in_error(e)
            if link is None:
                raise RuntimeError(f"no connect link in the first answer: {out['first']}")
            out["connect_status"] = open_link(link, opts.account)
            second = await session.call_tool(opts.tool, {})
            out["second"] = second.model_dump(by_alias=True, mode="json", exclude_none=True)

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
