"""Drive Warden with the official Python MCP SDK and its OAuth client, headless.

Runs the whole flow against a Warden URL whose authorization server auto-approves sign-in:
401 -> protected resource metadata -> authorization server metadata -> dynamic client
registration -> authorize (PKCE) -> token -> initialize -> tools/list -> tools/call.
Prints one JSON object: SDK version, negotiated protocol, tools seen, the call result and the
HTTP exchanges observed (method, path, status), for the calling test to assert on.
Works with the SDK's 2.x API (httpx2, streamable_http_client) and its 1.x API.
"""

import argparse
import asyncio
import html
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from importlib.metadata import version

from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientMetadata

SDK_VERSION = version("mcp")
MAJOR = int(SDK_VERSION.split(".")[0])

if MAJOR >= 2:
    import httpx2 as httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import AuthorizationCodeResult
else:
    import httpx
    from mcp.client.streamable_http import streamablehttp_client

REDIRECT_URI = "http://127.0.0.1:65531/callback"


class MemoryStorage:
    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Stands in for the user's browser: opens the authorization URL and follows redirects, with
    cookies, through the authorization server's own pages until it is sent to the callback."""

    def __init__(self):
        self.params = None

    async def redirect(self, authorization_url: str) -> None:
        import http.cookiejar

        opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        url = authorization_url
        data = None
        for _ in range(15):
            try:
                page = opener.open(url, data=data).read().decode()
                # Warden's consent page (its own authorization server): the person allows.
                consent = re.search(r'name=consent value="([^"]+)"', page)
                action = re.search(r'<form method=post action="([^"]+)"', page)
                if not (consent and action):
                    raise RuntimeError(f"{url} answered without redirecting")
                url = html.unescape(action.group(1))
                data = urllib.parse.urlencode({"consent": html.unescape(consent.group(1)), "decision": "allow"}).encode()
                continue
            except urllib.error.HTTPError as e:
                data = None
                if e.code not in (302, 303, 307):
                    raise RuntimeError(f"authorization failed: HTTP {e.code} at {url}") from e
                url = urllib.parse.urljoin(url, e.headers["Location"])
            if url.startswith(REDIRECT_URI):
                break
        else:
            raise RuntimeError("too many redirects during authorization")
        location = url
        query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
        if "error" in query:
            raise RuntimeError(f"authorization error: {query['error'][0]}")
        self.params = {k: v[0] for k, v in query.items()}

    async def callback(self):
        p = self.params
        if MAJOR >= 2:
            return AuthorizationCodeResult(code=p["code"], state=p.get("state"), iss=p.get("iss"))
        return p["code"], p.get("state")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--args", default="{}")
    parser.add_argument("--scope", default=None)
    # A Client ID Metadata Document's URL to sign in with instead of registering (CIMD).
    parser.add_argument("--client-metadata-url", default=None)
    opts = parser.parse_args()

    exchanges = []

    async def log_response(response):
        exchanges.append({"method": response.request.method, "url": str(response.request.url), "status": response.status_code})

    browser = Browser()
    oauth = OAuthClientProvider(
        server_url=opts.url,
        client_metadata=OAuthClientMetadata(
            client_name="warden-interop",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=opts.scope,
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
        **({"client_metadata_url": opts.client_metadata_url} if opts.client_metadata_url else {}),
    )
    hooks = {"response": [log_response]}
    out = {"sdk_version": SDK_VERSION}

    async def session_flow(read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["protocol_version"] = str(init.protocolVersion if hasattr(init, "protocolVersion") else init.protocol_version)
            tools = await session.list_tools()
            out["tools"] = [t.name for t in tools.tools]
            result = await session.call_tool(opts.tool, json.loads(opts.args))
            dump = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            out["result"] = dump

    if MAJOR >= 2:
        async with httpx.AsyncClient(auth=oauth, event_hooks=hooks, timeout=30) as http:
            async with streamable_http_client(opts.url, http_client=http) as streams:
                await session_flow(streams[0], streams[1])
    else:
        def factory(headers=None, timeout=None, auth=None):
            return httpx.AsyncClient(headers=headers, timeout=timeout or httpx.Timeout(30), auth=auth, event_hooks=hooks)

        async with streamablehttp_client(opts.url, auth=oauth, httpx_client_factory=factory) as (read, write, _):
            await session_flow(read, write)

    out["exchanges"] = exchanges
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
