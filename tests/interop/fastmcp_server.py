"""A server built on the official Python SDK's FastMCP (mcp 1.x), over Streamable HTTP, that
requires its own bearer token: only a client holding KEY may call it. Warden holds the key;
the agents behind Warden never see it.

Usage: fastmcp_server.py PORT KEY. Prints "ready" when it accepts connections. Its `whoami`
tool answers with the identity headers Warden sent and whether an Authorization header other
than its own key arrived.
"""

import sys

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from starlette.responses import JSONResponse

PORT = int(sys.argv[1])
KEY = sys.argv[2]

mcp = FastMCP("fastmcp-behind-warden", stateless_http=False)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def whoami(ctx: Context) -> dict:
    """Who Warden says is calling."""
    request = ctx.request_context.request
    headers = request.headers if request is not None else {}
    return {"user": headers.get("x-user-id"), "authorization_is_ours": headers.get("authorization") == f"Bearer {KEY}"}


app = mcp.streamable_http_app()


class RequireKey:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            if auth != f"Bearer {KEY}":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.inner(scope, receive, send)


class Ready(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("ready", flush=True)


Ready(uvicorn.Config(RequireKey(app), host="127.0.0.1", port=PORT, log_level="warning")).run()
