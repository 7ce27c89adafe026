"""An MCP server (the official Python SDK's FastMCP, mcp 1.x, Streamable HTTP) protected by the
company IdP: it admits only a bearer token the IdP signed for it (RS256, the IdP's JWKS, its own
audience), as an API behind Okta or Keycloak does. Warden reaches it with a token exchanged for
each caller. Its `whoami` tool answers with the token's subject, actor and scope.

Usage: exchange_mcp_server.py PORT ISSUER AUDIENCE. Prints "ready" when it accepts connections.
"""

import sys

import jwt
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from starlette.responses import JSONResponse

PORT = int(sys.argv[1])
ISSUER = sys.argv[2]
AUDIENCE = sys.argv[3]
jwks = jwt.PyJWKClient(f"{ISSUER}/jwks")

mcp = FastMCP("exchange-protected", stateless_http=False)


def claims_of(authorization: str) -> dict:
    token = authorization.removeprefix("Bearer ")
    key = jwks.get_signing_key_from_jwt(token).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)


@mcp.tool()
def whoami(ctx: Context) -> dict:
    """Who the IdP's token says is calling, and who acts for them."""
    request = ctx.request_context.request
    claims = claims_of(request.headers.get("authorization", ""))
    return {"sub": claims["sub"], "act": claims.get("act"), "scope": claims.get("scope")}


app = mcp.streamable_http_app()


class RequireIdpToken:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            try:
                claims_of(dict(scope["headers"]).get(b"authorization", b"").decode())
            except Exception as e:  # any failure is a refusal
                await JSONResponse({"error": "invalid_token", "why": str(e)}, status_code=401)(scope, receive, send)
                return
        await self.inner(scope, receive, send)


class Ready(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("ready", flush=True)


Ready(uvicorn.Config(RequireIdpToken(app), host="127.0.0.1", port=PORT, log_level="warning")).run()
