"""``sandbox_tool()``: a LlamaIndex ``FunctionTool`` that runs code in a sandbox (``pip install
'llm-sandbox[llamaindex]'``).

The tool takes ``code`` and ``language``; its output is a ``TextBlock`` with the run's exit code, output and errors,
followed by an ``ImageBlock`` per plot the code drew. ``call`` reuses ``session``, ``acall`` reuses
``async_session``, when given and of the call's language; other calls get a sandbox of their own. Cancelling an
``acall`` cancels the run in the sandbox.
"""

from __future__ import annotations

import base64
from typing import Any

from llama_index.core.base.llms.types import ContentBlock, ImageBlock, TextBlock
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, Field

from llm_sandbox.aio import AsyncSandboxSession
from llm_sandbox.integrations.tool_runs import (
    CODE_HELP,
    DESCRIPTION,
    LANGUAGE_HELP,
    TOOL_NAME,
    SyncSession,
    ToolRun,
    arun_code,
    run_code,
)

__all__ = ["SandboxToolInput", "sandbox_tool"]


class SandboxToolInput(BaseModel):
    """The tool's arguments, as the model fills them in."""

    code: str = Field(description=CODE_HELP)
    language: str = Field(default="python", description=LANGUAGE_HELP)


def sandbox_tool(
    session: SyncSession | None = None,
    async_session: AsyncSandboxSession | None = None,
    *,
    name: str = TOOL_NAME,
    description: str = DESCRIPTION,
    **session_options: Any,
) -> FunctionTool:
    """A ``FunctionTool`` that runs code in a sandbox (see the module); ``session_options`` configure the sandboxes
    of calls that get one of their own (any ``SandboxSession`` option)."""

    def execute_code(code: str, language: str = "python") -> list[ContentBlock]:
        return blocks(run_code(code, language, session, session_options))

    async def aexecute_code(code: str, language: str = "python") -> list[ContentBlock]:
        return blocks(await arun_code(code, language, async_session, session_options))

    return FunctionTool.from_defaults(
        fn=execute_code, async_fn=aexecute_code, name=name, description=description, fn_schema=SandboxToolInput
    )


def blocks(run: ToolRun) -> list[ContentBlock]:
    """The tool's output: the text, then the images."""
    output: list[ContentBlock] = [TextBlock(text=run.text)]
    output += [
        ImageBlock(image=base64.b64decode(plot.content_base64), image_mimetype=mime) for mime, plot in run.images()
    ]
    return output
