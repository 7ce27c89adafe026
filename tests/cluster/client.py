"""One official-SDK client through the load balancer: signs in once (the whole OAuth flow,
through whichever replica HAProxy picks for each request), then calls a tool N times in one
session. Prints how many calls succeeded and how many were refused, by code.
Used by scripts/cluster-test."""

import argparse
import asyncio
import json

from common import error_code, is_error, session, sign_in


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--calls", type=int, default=40)
    opts = parser.parse_args()
    out = {"ok": 0, "refused": {}, "tools": []}
    token = await sign_in(opts.url, "warden-cluster-test")
    async with session(opts.url, token) as s:
        out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
        for i in range(opts.calls):
            try:
                result = await s.call_tool(opts.tool, {"n": i})
                if is_error(result):
                    out["refused"]["tool_error"] = out["refused"].get("tool_error", 0) + 1
                else:
                    out["ok"] += 1
            except Exception as e:  # an MCP error: its data.code says which
                code = error_code(e)
                out["refused"][code] = out["refused"].get(code, 0) + 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
