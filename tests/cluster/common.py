"""What the cluster test's clients share: signing in with the official Python SDK through the
load balancer, plain JSON-RPC calls, and a browser that completes a connect link."""

import http.cookiejar
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
from python_client import MAJOR, REDIRECT_URI, Browser, MemoryStorage, httpx  # noqa: E402

from mcp import ClientSession  # noqa: E402
from mcp.client.auth import OAuthClientProvider  # noqa: E402
from mcp.shared.auth import OAuthClientMetadata  # noqa: E402

HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
LINK = re.compile(r"https?://[^\s\"']+/oauth/connect/[A-Za-z0-9_-]+")


async def sign_in(url: str, name: str = "warden-cluster") -> str:
    """The SDK's whole OAuth flow (metadata, registration, PKCE, token) and one initialize;
    returns the access token."""
    storage = MemoryStorage()
    browser = Browser()
    oauth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name=name, redirect_uris=[REDIRECT_URI], grant_types=["authorization_code"], response_types=["code"]
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


def session(url: str, token: str):
    """An SDK session opened with a bearer token: `async with session(...) as s:`."""
    import contextlib

    @contextlib.asynccontextmanager
    async def opened():
        headers = {"Authorization": f"Bearer {token}"}
        if MAJOR >= 2:
            from mcp.client.streamable_http import streamable_http_client

            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                async with streamable_http_client(url, http_client=client) as streams:
                    async with ClientSession(streams[0], streams[1]) as s:
                        await s.initialize()
                        yield s
        else:
            from mcp.client.streamable_http import streamablehttp_client

            async with streamablehttp_client(url, headers=headers) as (read, write, _):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    yield s

    return opened()


def is_error(result) -> bool:
    return bool(result.isError if hasattr(result, "isError") else result.is_error)


def error_code(e: Exception) -> str:
    """The stable code in an MCP error's data, else the exception's type."""
    data = getattr(getattr(e, "error", None), "data", None) or {}
    return data.get("code", type(e).__name__) if isinstance(data, dict) else type(e).__name__


def link_in(value) -> str | None:
    """A connect link in an MCP error (URL elicitation, -32042), a JSON-RPC body or a text."""
    data = getattr(getattr(value, "error", None), "data", None)
    if isinstance(data, dict):
        for e in data.get("elicitations", []):
            if e.get("mode") == "url":
                return e["url"]
    found = LINK.search(value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict) else str(value))
    return found.group(0) if found else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def open_link(link: str) -> list:
    """The user's browser: follows the link's redirects with cookies (to the provider, which
    approves, and back to the gateway's callback). Returns each hop as (url, status, the
    `X-Served-By` the load balancer added)."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    hops, url = [], link
    for _ in range(6):
        try:
            r = opener.open(url)
            hops.append((url, r.status, r.headers.get("x-served-by")))
            return hops
        except urllib.error.HTTPError as e:
            hops.append((url, e.code, e.headers.get("x-served-by")))
            if e.code not in (302, 303):
                return hops
            url = urllib.parse.urljoin(url, e.headers["Location"])
    raise RuntimeError(f"too many redirects: {hops}")
