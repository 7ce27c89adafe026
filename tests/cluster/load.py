"""A fixed-rate load generator for `scripts/cluster-test faults`: signs in once with the
official Python SDK (through the balancer) to get a real access token, connects the user's
upstream account once (the connect link, as a browser), then sends a fixed number of requests
per second for a fixed time, cycling through five kinds:

- allowed: tools/call of a tool the token may call (recorded with whether its result is an
  `isError`: the upstream's failure, answered as a tool error);
- denied: tools/call of a tool that needs a scope the token lacks (403 step-up);
- unauthenticated: no token (401);
- api_key: tools/list with a gateway-issued API key (checked against PostgreSQL on a miss);
- per_user: tools/call of a tool reached with the user's own OAuth connection (the vault).

With `--resign FILE`, once FILE exists the generator signs in again (the issuer has rotated
its signing key meanwhile) and sends every later token-bearing request with the new token.

Each request is sent on schedule whether or not earlier ones have answered (open loop), with a
5 s timeout. Prints one JSON object: the `kid` of each token used, and every request's send
time, kind, token generation, status (0 for no answer), time to answer, X-Request-Id and, for
tool calls, whether the result was a tool error or the JSON-RPC error's code.
"""

import argparse
import asyncio
import base64
import json
import os
import time

from common import HEADERS, httpx, link_in, open_link, sign_in


def kid(token: str) -> str:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid", "")


async def connect(http, url, token, tool) -> None:
    """Calls `tool`, follows the connect link it answers with, and checks the next call works."""
    body = {"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
    auth = {**HEADERS, "Authorization": "Bearer " + token}
    link = link_in((await http.post(url, json=body, headers=auth)).json())
    if link is None:
        raise RuntimeError("no connect link")
    hops = await asyncio.to_thread(open_link, link)
    if hops[-1][1] != 200:
        raise RuntimeError(f"the connect flow failed: {hops}")
    again = (await http.post(url, json=body, headers=auth)).json()
    if again.get("result", {}).get("isError") is not False:
        raise RuntimeError(f"the connected call failed: {again}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--per-user-tool", required=True)
    parser.add_argument("--rate", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--ready", default=None, help="a file created once signed in, when the load starts")
    parser.add_argument("--resign", default=None, help="sign in again once this file exists")
    opts = parser.parse_args()
    tokens = [await sign_in(opts.url, "warden-load")]
    kinds = {
        "allowed": (True, {"method": "tools/call", "params": {"name": "metadata", "arguments": {}}}),
        "denied": (True, {"method": "tools/call", "params": {"name": "admin_only", "arguments": {}}}),
        "unauthenticated": (False, {"method": "tools/list"}),
        "api_key": (False, {"method": "tools/list"}),
        "per_user": (True, {"method": "tools/call", "params": {"name": opts.per_user_tool, "arguments": {}}}),
    }
    order = list(kinds)
    results = []
    resigned = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=5, limits=limits) as http:
        await connect(http, opts.url, tokens[0], opts.per_user_tool)

        async def resign():
            while not os.path.exists(opts.resign):
                if time.monotonic() - start > opts.seconds:
                    return
                await asyncio.sleep(0.1)
            began = time.monotonic()
            tokens.append(await sign_in(opts.url, "warden-load"))
            resigned.update(at=round(began - start, 3), took=round(time.monotonic() - began, 3))

        async def one(i, at):
            kind = order[i % len(order)]
            bearer, message = kinds[kind]
            generation = len(tokens)
            extra = {"Authorization": "Bearer " + (tokens[-1] if bearer else opts.key)} if kind != "unauthenticated" else {}
            body = dict(message, jsonrpc="2.0", id=i)
            status, request_id, tool_error, rpc_error = 0, None, False, None
            sent = time.monotonic()
            try:
                r = await http.post(opts.url, json=body, headers={**HEADERS, **extra})
                status, request_id = r.status_code, r.headers.get("x-request-id")
                if status == 200 and kind in ("allowed", "per_user"):
                    answer = r.json()
                    if "error" in answer:  # a JSON-RPC error: its stable code
                        rpc_error = (answer["error"].get("data") or {}).get("code") or str(answer["error"].get("code"))
                    tool_error = bool(answer.get("result", {}).get("isError"))
            except Exception:
                pass
            results.append({"t": round(at, 3), "kind": kind, "token": generation if bearer else 0,
                            "status": status, "ms": round((time.monotonic() - sent) * 1000), "request_id": request_id,
                            "tool_error": tool_error, "rpc_error": rpc_error})

        if opts.ready:
            open(opts.ready, "w").close()
        start = time.monotonic()
        tasks = [asyncio.create_task(resign())] if opts.resign else []
        total = opts.rate * opts.seconds
        for i in range(total):
            at = i / opts.rate
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, at)))
        await asyncio.gather(*tasks)
    print(json.dumps({"kids": [kid(t) for t in tokens], "resigned": resigned, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
