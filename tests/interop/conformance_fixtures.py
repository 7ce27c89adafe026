"""The official MCP conformance suite's tool fixtures, served over stdio by the official Python
SDK's FastMCP (mcp 1.x), for Warden to federate: the suite's tool scenarios then check, through
Warden, that text, image, audio, embedded resources, mixed content and errors pass through as
the server sent them. The content is what the suite's scenario descriptions ask for.
"""

import asyncio
import base64

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import AudioContent, EmbeddedResource, ImageContent, TextContent, TextResourceContents

# A 1x1 red PNG and a minimal (empty, 8 kHz mono) WAV.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = base64.b64encode(
    b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    + b"data" + (0).to_bytes(4, "little")
).decode()

mcp = FastMCP("conformance-fixtures")


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


if __name__ == "__main__":
    mcp.run()
