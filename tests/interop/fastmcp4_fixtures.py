"""A FastMCP 4 server (the `fastmcp` package, on the official Python SDK 2.x) whose tool asks the
client for input the 2026-07-28 way — the guard pattern: answer with an `InputRequiredResult`,
read `ctx.input_responses` on the retry — served over stdio for Warden to federate. The tool
asks what the suite's `test_input_required_result_multiple_inputs` asks (a name, a greeting from
the model, the roots), so one client script drives both fixtures.

    python fastmcp4_fixtures.py        (stdio)
"""

from fastmcp import Context, FastMCP
from mcp_types import InputRequiredResult

mcp = FastMCP("fastmcp4-fixtures")

WANTED = {
    "user_name": {
        "method": "elicitation/create",
        "params": {
            "message": "What is your name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    },
    "greeting": {
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "Generate a greeting"}}], "maxTokens": 50},
    },
    "client_roots": {"method": "roots/list", "params": {}},
}


def content(answer) -> dict:
    if hasattr(answer, "model_dump"):
        answer = answer.model_dump(by_alias=True, exclude_none=True)
    return answer.get("content") or {} if isinstance(answer, dict) else {}


@mcp.tool()
def multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """Asks for a name, a greeting from the model and the roots at once."""
    got = dict(ctx.input_responses or {})
    missing = {k: v for k, v in WANTED.items() if k not in got}
    if missing:
        return InputRequiredResult.model_validate({"inputRequests": missing, "requestState": "fastmcp4"})
    if ctx.request_state != "fastmcp4":
        raise ValueError("the request state did not come back")
    return f"All three answered for {content(got['user_name']).get('name', 'someone')}"


if __name__ == "__main__":
    mcp.run()
