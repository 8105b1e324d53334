"""``SandboxTool``: a LangChain tool that runs code in a sandbox (``pip install 'llm-sandbox[langchain]'``).

It takes ``code`` and ``language``; its content is the run's exit code, output and errors as text, followed by
the plots the code drew as LangChain image content blocks (``{"type": "image", "base64": ..., "mime_type": ...}``);
its artifact is the ``ExecutionResult`` (None when the run raised). Sync calls (``invoke``) reuse ``session``, async
ones (``ainvoke``) reuse ``async_session``, when given and of the call's language; other calls get a sandbox of
their own. Cancelling an async call cancels the run in the sandbox.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field

from llm_sandbox.aio import AsyncSandboxSession
from llm_sandbox.data import ExecutionResult
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

__all__ = ["SandboxTool", "SandboxToolInput"]

Content = str | list[str | dict[str, Any]]


class SandboxToolInput(BaseModel):
    """The tool's arguments, as the model fills them in."""

    code: str = Field(description=CODE_HELP)
    language: str = Field(default="python", description=LANGUAGE_HELP)


class SandboxTool(BaseTool):
    """Run code in a sandbox, as a LangChain tool (see the module)::

    tool = SandboxTool()
    message = tool.invoke({"type": "tool_call", "id": "1", "name": "execute_code", "args": {"code": "print(1)"}})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = TOOL_NAME
    description: str = DESCRIPTION
    args_schema: type[BaseModel] = SandboxToolInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    #: A session sync calls reuse when the call's language is its language.
    session: SyncSession | None = None
    #: A session async calls reuse when the call's language is its language.
    async_session: AsyncSandboxSession | None = None
    #: Options for the sandboxes of calls that get one of their own (any ``SandboxSession`` option).
    session_options: dict[str, Any] = Field(default_factory=dict)

    def _run(
        self, code: str, language: str = "python", run_manager: CallbackManagerForToolRun | None = None
    ) -> tuple[Content, ExecutionResult | None]:
        return content_and_artifact(run_code(code, language, self.session, self.session_options))

    async def _arun(
        self, code: str, language: str = "python", run_manager: AsyncCallbackManagerForToolRun | None = None
    ) -> tuple[Content, ExecutionResult | None]:
        return content_and_artifact(await arun_code(code, language, self.async_session, self.session_options))


def content_and_artifact(run: ToolRun) -> tuple[Content, ExecutionResult | None]:
    """The tool message's content (text, then the images) and its artifact."""
    images = run.images()
    if not images:
        return run.text, run.result
    blocks: list[str | dict[str, Any]] = [{"type": "text", "text": run.text}]
    blocks += [{"type": "image", "base64": plot.content_base64, "mime_type": mime} for mime, plot in images]
    return blocks, run.result
