"""OpenAI function calling: ``TOOL_SPEC`` (Chat Completions) and ``RESPONSES_TOOL_SPEC`` (Responses API) describe
the tool, and ``handle_tool_call`` runs a call the model made and returns the message to send back.

``handle_tool_call`` takes the call as the SDK returns it or as a plain dict: a Chat Completions tool call
(``{"id", "type": "function", "function": {"name", "arguments"}}``) is answered with a ``{"role": "tool",
"tool_call_id", "content"}`` message; a Responses ``function_call`` item (``{"type": "function_call", "call_id",
"name", "arguments"}``) with a ``function_call_output`` item. Plots come back as ``input_image`` parts of the
Responses output; a Chat Completions tool message carries text only, so there the text says how many were drawn.
``session`` (a ``SandboxSession``) is reused when given and of the call's language; ``ahandle_tool_call`` is the
asyncio form (cancelling it cancels the run in the sandbox).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm_sandbox.aio import AsyncSandboxSession
from llm_sandbox.errors import ValidationError
from llm_sandbox.integrations.tool_runs import (
    CODE_HELP,
    DESCRIPTION,
    LANGUAGE_HELP,
    LANGUAGES,
    TOOL_NAME,
    SyncSession,
    ToolRun,
    arun_code,
    run_code,
)

__all__ = ["RESPONSES_TOOL_SPEC", "TOOL_SPEC", "ahandle_tool_call", "handle_tool_call"]

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": CODE_HELP},
        "language": {"type": "string", "enum": list(LANGUAGES), "description": LANGUAGE_HELP},
    },
    "required": ["code", "language"],
    "additionalProperties": False,
}
TOOL_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {"name": TOOL_NAME, "description": DESCRIPTION, "parameters": PARAMETERS, "strict": True},
}
RESPONSES_TOOL_SPEC: dict[str, Any] = {
    "type": "function",
    "name": TOOL_NAME,
    "description": DESCRIPTION,
    "parameters": PARAMETERS,
    "strict": True,
}


def handle_tool_call(tool_call: Any, session: SyncSession | None = None, **session_options: Any) -> dict[str, Any]:
    """Run the call and return the message that answers it (see the module)."""
    call = _Call.read(tool_call)
    if call.problem:
        return call.answer(call.problem)
    return call.answer(run_code(call.code, call.language, session, session_options))


async def ahandle_tool_call(
    tool_call: Any, session: AsyncSandboxSession | None = None, **session_options: Any
) -> dict[str, Any]:
    """``handle_tool_call`` on the event loop."""
    call = _Call.read(tool_call)
    if call.problem:
        return call.answer(call.problem)
    return call.answer(await arun_code(call.code, call.language, session, session_options))


class _Call:
    """A tool call of either API, read from the SDK's object or a dict; ``problem`` says what is wrong with it."""

    def __init__(self, responses: bool, call_id: str, name: str, arguments: str) -> None:
        self.responses = responses
        self.call_id = call_id
        self.code = ""
        self.language: str | None = None
        self.problem = ""
        if name != TOOL_NAME:
            self.problem = f"error: no tool named {name!r}; the tool is {TOOL_NAME!r}"
            return
        try:
            values = json.loads(arguments or "{}")
        except ValueError as error:
            self.problem = f"error: the arguments are not JSON ({error})"
            return
        if not isinstance(values, dict) or not isinstance(values.get("code"), str):
            self.problem = 'error: the arguments must be an object with a string "code" (and "language")'
            return
        self.code = values["code"]
        language = values.get("language")
        self.language = language if isinstance(language, str) else None

    @classmethod
    def read(cls, tool_call: Any) -> _Call:
        fields = tool_call.model_dump() if hasattr(tool_call, "model_dump") else tool_call
        if not isinstance(fields, Mapping):
            raise ValidationError(f"a tool call is a dict or an OpenAI SDK object, not {type(tool_call).__name__}")
        if fields.get("type") == "function_call":
            return cls(True, str(fields.get("call_id")), str(fields.get("name")), str(fields.get("arguments")))
        function = fields.get("function")
        if not isinstance(function, Mapping):
            raise ValidationError("a Chat Completions tool call has a 'function'; a Responses one type 'function_call'")
        return cls(False, str(fields.get("id")), str(function.get("name")), str(function.get("arguments")))

    def answer(self, outcome: ToolRun | str) -> dict[str, Any]:
        run = outcome if isinstance(outcome, ToolRun) else ToolRun(outcome)
        if not self.responses:
            return {"role": "tool", "tool_call_id": self.call_id, "content": run.text}
        images = run.images()
        output: str | list[dict[str, Any]] = run.text
        if images:
            output = [{"type": "input_text", "text": run.text}]
            output += [
                {"type": "input_image", "image_url": f"data:{mime};base64,{plot.content_base64}"}
                for mime, plot in images
            ]
        return {"type": "function_call_output", "call_id": self.call_id, "output": output}
