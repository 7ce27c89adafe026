"""The official MCP conformance suite's tool, resource and prompt fixtures, served by the
official Python SDK's FastMCP (mcp 1.x, which speaks 2025-11-25) for Warden to federate: the
suite's scenarios then check, through Warden, that text, image, audio, embedded resources, mixed
content, errors, progress, resources and prompts pass through as the server sent them, and that
the server's requests to the client during a call (sampling, elicitation) reach the suite's
client and its answers the server. The content is what the suite's scenario descriptions ask
for.

Usage: with a PORT argument, over Streamable HTTP on 127.0.0.1:PORT (a server's requests during
a call then come on the call's own stream, which Warden relays to the caller); else over stdio.
"""

import asyncio
import base64

import json
import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.server.fastmcp.prompts.base import Prompt, UserMessage
from mcp.types import (
    AudioContent,
    ErrorData,
    SamplingMessage,
    Completion,
    EmbeddedResource,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    TextContent,
    TextResourceContents,
)

# A 1x1 red PNG and a minimal (empty, 8 kHz mono) WAV.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = base64.b64encode(
    b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    + b"data" + (0).to_bytes(4, "little")
).decode()

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else None
mcp = FastMCP("conformance-fixtures", host="127.0.0.1", port=PORT or 8000)


@mcp.tool()
def test_simple_text() -> list:
    """Returns a simple text response."""
    return [TextContent(type="text", text="This is a simple text response for testing.")]


@mcp.tool()
def test_image_content() -> list:
    """Returns an image."""
    return [ImageContent(type="image", data=PNG, mimeType="image/png")]


@mcp.tool()
def test_audio_content() -> list:
    """Returns audio."""
    return [AudioContent(type="audio", data=WAV, mimeType="audio/wav")]


@mcp.tool()
def test_embedded_resource() -> list:
    """Returns an embedded resource."""
    resource = TextResourceContents(uri="test://embedded-resource", mimeType="text/plain", text="This is an embedded resource content.")
    return [EmbeddedResource(type="resource", resource=resource)]


@mcp.tool()
def test_multiple_content_types() -> list:
    """Returns text, an image and a resource."""
    resource = TextResourceContents(uri="test://mixed-content-resource", mimeType="application/json", text='{"test":"data","value":123}')
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG, mimeType="image/png"),
        EmbeddedResource(type="resource", resource=resource),
    ]


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100."""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100)
        await asyncio.sleep(0.05)
    return "Progress test completed"


@mcp.tool()
def test_error_handling() -> str:
    """Always fails, with a message."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@mcp.resource("test://static-text", name="static-text", description="A static text resource.", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", description="A static binary resource.", mime_type="image/png")
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@mcp.resource("test://template/{id}/data", name="template-data", description="Data for an id.", mime_type="application/json")
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


@mcp.prompt(description="A simple prompt.")
def test_simple_prompt() -> list:
    return [UserMessage("This is a simple prompt for testing.")]


@mcp.prompt(description="A prompt with two arguments.")
def test_prompt_with_arguments(arg1: str, arg2: str) -> list:
    return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


@mcp.prompt(description="A prompt that embeds a resource.")
def test_prompt_with_embedded_resource(resourceUri: str) -> list:
    resource = TextResourceContents(uri=resourceUri, mimeType="text/plain", text="Embedded resource content for testing.")
    return [
        UserMessage(content=EmbeddedResource(type="resource", resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@mcp.prompt(description="A prompt with an image.")
def test_prompt_with_image() -> list:
    return [UserMessage(content=ImageContent(type="image", data=PNG, mimeType="image/png")), UserMessage("Please analyze the image above.")]


# Completions (the suite's completion-complete scenario): the suggestions that start with what
# was typed, for the prompt's arguments and the template's id.
SUGGESTIONS = {"arg1": ["paris", "park", "party", "test-value"], "arg2": ["alpha", "beta"], "id": ["1", "2", "42"]}


@mcp.completion()
async def complete(ref, argument, context) -> Completion | None:
    known = isinstance(ref, PromptReference) and ref.name == "test_prompt_with_arguments"
    known = known or (isinstance(ref, ResourceTemplateReference) and ref.uri == "test://template/{id}/data")
    if not known:
        return None
    values = [v for v in SUGGESTIONS.get(argument.name, []) if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), hasMore=False)


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Logs three times while it runs (tools-call-with-logging)."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


# Requests to the client during a call (tools-call-sampling, tools-call-elicitation,
# elicitation-sep1034-defaults, elicitation-sep1330-enums), made on the call's own stream.
@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model."""
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    result = await ctx.session.create_message(messages=[message], max_tokens=100, related_request_id=ctx.request_id)
    text = result.content.text if isinstance(result.content, TextContent) else str(result.content)
    return f"LLM response: {text}"


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"User response: action={result.action}, content={json.dumps(result.content)}"


@mcp.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Asks the user, with a default for every primitive type (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": True},
        },
    }
    result = await ctx.session.elicit_form("Please confirm your details", schema, related_request_id=ctx.request_id)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@mcp.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Asks the user, with every enum form (SEP-1330)."""
    titled = [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {"anyOf": [{"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}]},
            },
        },
    }
    result = await ctx.session.elicit_form("Pick your options", schema, related_request_id=ctx.request_id)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


# The 2026-07-28 suite's diagnostic tools (`server-stateless`), which check what reaches a caller
# through Warden: a log without `logLevel` (none may), a request during the call (it must come
# as an input request, never on the stream), and a capability the caller did not declare (the
# server's -32021 must reach it as the JSON-RPC error, HTTP 400).
@mcp.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs once while it runs."""
    await ctx.info("test_logging_tool ran")
    return "logged"


@mcp.tool()
async def test_streaming_elicitation(ctx: Context) -> str:
    """Asks the user during the call."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    result = await ctx.session.elicit_form("Go on?", schema, related_request_id=ctx.request_id)
    return f"action={result.action}"


class MissingCapability(UrlElicitationRequiredError):
    """A JSON-RPC error from a FastMCP 1.x tool: the one exception it lets through as such (its
    URL elicitation's), carrying -32021 instead."""

    def __init__(self, capability: str):
        super().__init__([])
        self.error = ErrorData(
            code=-32021, message=f"this tool needs the {capability} capability", data={"requiredCapabilities": {capability: {}}}
        )


@mcp.tool()
async def test_missing_capability(ctx: Context) -> str:
    """Needs the caller's sampling capability, which Warden passes on in `_meta`."""
    meta = ctx.request_context.meta
    declared = (getattr(meta, "model_extra", None) or {}).get("io.modelcontextprotocol/clientCapabilities") or {}
    if "sampling" not in declared:
        raise MissingCapability("sampling")
    return "sampling declared"


# List changes (`server-stateless`'s subscription checks): a tool, or a prompt, added at run time
# and the list said to have changed, which Warden passes on to the callers listening.
ADDED = {"tools": 0, "prompts": 0}


@mcp.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds a tool and says the tool list changed."""
    ADDED["tools"] += 1
    mcp.add_tool(lambda: "added", name=f"test_added_tool_{ADDED['tools']}", description="Added at run time.")
    await ctx.session.send_tool_list_changed()
    return "tool list changed"


@mcp.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds a prompt and says the prompt list changed."""
    ADDED["prompts"] += 1
    mcp.add_prompt(Prompt.from_function(lambda: "added", name=f"test_added_prompt_{ADDED['prompts']}", description="Added at run time."))
    await ctx.session.send_prompt_list_changed()
    return "prompt list changed"


if __name__ == "__main__":
    mcp.run(transport="streamable-http" if PORT else "stdio")
