"""The official MCP conformance suite's multi round-trip fixtures (SEP-2322,
`input-required-result-*` scenarios), served over stdio by the official Python SDK 2.x
(`MCPServer`), for Warden to federate with the prefix `test_input_required_result_` (so
`elicitation` is exposed as the suite's `test_input_required_result_elicitation`): each tool
answers a call without the input it needs
with an `InputRequiredResult`, and the retry that carries the client's answers (and the
server's `requestState`) with a result. The SDK seals the server's `requestState` itself
(`RequestStateSecurity`), so a state altered on the way is refused by the server too.

    python input_required_fixtures.py        (stdio)
"""

import json

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult

mcp = MCPServer("input-required-fixtures")


def elicit(message: str, properties: dict, required: list) -> dict:
    return {
        "method": "elicitation/create",
        "params": {"message": message, "requestedSchema": {"type": "object", "properties": properties, "required": required}},
    }


def sample(text: str, max_tokens: int) -> dict:
    return {
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": {"type": "text", "text": text}}], "maxTokens": max_tokens},
    }


ROOTS = {"method": "roots/list", "params": {}}
NAME = elicit("What is your name?", {"name": {"type": "string"}}, ["name"])


def ask(requests: dict, state: dict | None = None) -> InputRequiredResult:
    return InputRequiredResult.model_validate(
        {"inputRequests": requests, **({"requestState": json.dumps(state)} if state is not None else {})}
    )


def answers(ctx: Context) -> dict:
    return dict(ctx.input_responses or {})


def state(ctx: Context) -> dict:
    return json.loads(ctx.request_state) if ctx.request_state else {}


def content(answer) -> dict:
    """An elicitation's accepted content (answers arrive as models or as plain dicts)."""
    if hasattr(answer, "model_dump"):
        answer = answer.model_dump(by_alias=True, exclude_none=True)
    return answer.get("content") or {} if isinstance(answer, dict) else {}


def text_of(answer) -> str:
    if hasattr(answer, "model_dump"):
        answer = answer.model_dump(by_alias=True, exclude_none=True)
    return ((answer or {}).get("content") or {}).get("text", "") if isinstance(answer, dict) else ""


@mcp.tool()
def elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks the user's name, then greets them."""
    got = answers(ctx)
    if "user_name" not in got:
        return ask({"user_name": NAME})
    return f"Hello, {content(got['user_name']).get('name', 'stranger')}!"


@mcp.tool()
def sampling(ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model a question, then answers with what it said."""
    got = answers(ctx)
    if "capital_question" not in got:
        return ask({"capital_question": sample("What is the capital of France?", 100)})
    return f"The model said: {text_of(got['capital_question'])}"


@mcp.tool()
def list_roots(ctx: Context) -> str | InputRequiredResult:
    """Asks the client's roots, then names them."""
    got = answers(ctx)
    if "client_roots" not in got:
        return ask({"client_roots": ROOTS})
    roots = got["client_roots"]
    if hasattr(roots, "model_dump"):
        roots = roots.model_dump(by_alias=True, exclude_none=True)
    uris = [r.get("uri") for r in (roots or {}).get("roots", [])]
    return f"Roots: {', '.join(str(u) for u in uris)}"


@mcp.tool()
def request_state(ctx: Context) -> str | InputRequiredResult:
    """Asks for a confirmation with a request state, and checks the state comes back."""
    got = answers(ctx)
    if "confirm" not in got:
        return ask({"confirm": elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])}, {"step": "confirm"})
    return "state-ok" if state(ctx).get("step") == "confirm" else "state-missing"


@mcp.tool()
def multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """Asks for a name, a greeting from the model and the roots at once."""
    got = answers(ctx)
    wanted = {"user_name": NAME, "greeting": sample("Generate a greeting", 50), "client_roots": ROOTS}
    missing = {k: v for k, v in wanted.items() if k not in got}
    if missing:
        return ask(missing, {"asked": sorted(wanted)})
    return f"All three answered for {content(got['user_name']).get('name', 'someone')}"


@mcp.tool()
def multi_round(ctx: Context) -> str | InputRequiredResult:
    """Two rounds of questions, the state growing between them."""
    got, kept = answers(ctx), state(ctx)
    if "step1" in got:
        name = content(got["step1"]).get("name", "?")
        return ask({"step2": elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])}, {"round": 2, "name": name})
    if "step2" in got and kept.get("round") == 2:
        return f"{kept.get('name')} likes {content(got['step2']).get('color', '?')}"
    return ask({"step1": elicit("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])}, {"round": 1})


@mcp.tool()
def tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Asks with an integrity-protected state (the SDK seals it); a tampered one is refused."""
    got = answers(ctx)
    if not got:
        return ask({"confirm": elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])}, {"step": "sealed"})
    return "state-ok" if state(ctx).get("step") == "sealed" else "state-missing"


@mcp.tool()
def capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only for what the client declared it can do."""
    caps = ctx.client_capabilities
    wanted = {}
    if caps is not None and caps.sampling is not None:
        wanted["greeting"] = sample("Generate a greeting", 50)
    if caps is not None and caps.elicitation is not None:
        wanted["user_name"] = NAME
    if caps is not None and caps.roots is not None:
        wanted["client_roots"] = ROOTS
    got = answers(ctx)
    if wanted and not all(k in got for k in wanted):
        return ask(wanted)
    return f"Asked for: {', '.join(sorted(wanted)) or 'nothing'}"


@mcp.prompt()
def prompt(ctx: Context) -> list | InputRequiredResult:
    """A prompt that needs the user's context first (the suite's non-tool request)."""
    got = answers(ctx)
    if "user_context" not in got:
        return ask({"user_context": elicit("What context should the prompt use?", {"context": {"type": "string"}}, ["context"])})
    return [{"role": "user", "content": {"type": "text", "text": f"Use this context: {content(got['user_context']).get('context', '')}"}}]


if __name__ == "__main__":
    mcp.run()
