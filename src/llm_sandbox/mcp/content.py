"""Results as MCP content: the run's outcome as JSON text (as the reference's server gives it: exit code, stdout,
stderr and the rest), then every plot of the run as an image, then every file it wrote into its outputs folder as
an embedded resource."""

from __future__ import annotations

import base64
import json
import mimetypes
from typing import Any

from mcp.types import BlobResourceContents, CallToolResult, EmbeddedResource, ImageContent, TextContent

from llm_sandbox.data import ExecutionResult, FileType

# Plot formats a client can show as an image; the others (PDF, HTML, ...) come back as embedded resources.
IMAGE_TYPES = {
    FileType.PNG: "image/png",
    FileType.JPEG: "image/jpeg",
    FileType.GIF: "image/gif",
    FileType.WEBP: "image/webp",
    FileType.SVG: "image/svg+xml",
}


def result_content(result: ExecutionResult, **extra: Any) -> CallToolResult:
    """The tool result of one run: JSON text first, then its plots and output files."""
    summary: dict[str, Any] = {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "duration_s": round(result.duration_s, 4),
        "plots": len(result.plots),
        "files": [item.name for item in result.files],
        **extra,
    }
    if result.artifacts_truncated:
        summary["skipped_artifacts"] = list(result.skipped_artifacts)
    state_lost = getattr(result, "state_lost", None)
    if state_lost is not None:
        summary["state_lost"] = state_lost
    blocks: list[TextContent | ImageContent | EmbeddedResource] = [TextContent(text=json.dumps(summary))]
    for number, plot in enumerate(result.plots):
        mime = IMAGE_TYPES.get(plot.format)
        if mime is not None:
            blocks.append(ImageContent(data=plot.content_base64, mime_type=mime))
        else:
            uri = f"sandbox://plots/{number}.{plot.format.value}"
            blocks.append(blob(uri, plot.content_base64, mimetypes.guess_type(uri)[0]))
    for item in result.files:
        uri = f"sandbox://outputs/{item.name}"
        blocks.append(blob(uri, item.content_base64, mimetypes.guess_type(item.name)[0]))
    return CallToolResult(content=list(blocks))


def json_content(data: Any) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=json.dumps(data, indent=2))])


def error_content(error: BaseException) -> CallToolResult:
    """A failure the client should see and can act on (a wrong language, a full server, a failed install)."""
    message = f"{type(error).__name__}: {error}"
    output = getattr(error, "output", None)
    data: dict[str, Any] = {"exit_code": 1, "stdout": "", "stderr": message, "error": message}
    if output is not None:
        data["stdout"] = output.stdout
        data["stderr"] = f"{output.stderr}{message}"
    return CallToolResult(content=[TextContent(text=json.dumps(data))], is_error=True)


def file_content(path: str, uri: str, data: bytes) -> CallToolResult:
    """A downloaded file: a short JSON description, then the bytes as an embedded resource."""
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    description = TextContent(text=json.dumps({"path": path, "size": len(data), "mime_type": mime}))
    return CallToolResult(content=[description, blob(uri, base64.b64encode(data).decode("ascii"), mime)])


def blob(uri: str, content_base64: str, mime: str | None) -> EmbeddedResource:
    return EmbeddedResource(
        resource=BlobResourceContents(uri=uri, blob=content_base64, mime_type=mime or "application/octet-stream")
    )
