"""The framework tools, invoked through each framework's real package as the framework would (no model call), and
the examples of their pages in docs/ run as written. The tools stand on the sessions, whose backends the contract
suite covers: Docker (the default) here."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from llama_index.core.base.llms.types import ImageBlock, TextBlock
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionToolMessageParam
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.responses import ResponseFunctionToolCall, ResponseInputItemParam
from pydantic import TypeAdapter

from llm_sandbox import AsyncSandboxSession, SandboxSession
from llm_sandbox.integrations.langchain import SandboxTool
from llm_sandbox.integrations.llamaindex import sandbox_tool
from llm_sandbox.integrations.openai import RESPONSES_TOOL_SPEC, TOOL_SPEC, ahandle_tool_call, handle_tool_call

DOCS = Path(__file__).resolve().parents[2] / "docs"
PNG = b"\x89PNG\r\n\x1a\n"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nprint('drawn')"
# (page, printed output of each of its python examples)
PAGES = {
    "async.md": ["0 42\nexit code 3\ncancelled; the session goes on\n"],
    "integrations/langchain.md": [
        "exit code: 0\nstdout:\n42\n(1 plot drawn)\nimage image/png 0\n",
        "exit code: 0\nstdout:\nkept\n",
    ],
    "integrations/llamaindex.md": [
        "exit code: 0\nstdout:\n42\n(1 plot drawn)\n['text', 'image']\n",
    ],
    "integrations/openai.md": [
        "{'role': 'tool', 'tool_call_id': 'call_1', 'content': 'exit code: 0\\nstdout:\\n42'}\n",
        "function_call_output ['input_text', 'input_image']\n",
    ],
}


def examples(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.M | re.S)


@pytest.mark.parametrize("page", list(PAGES))
def test_the_pages_examples_run_as_written(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    found = examples(page)
    assert len(found) == len(PAGES[page]), f"{page}'s examples changed: update this test"
    for code, printed in zip(found, PAGES[page], strict=True):
        exec(compile(code, page, "exec"), {"__name__": "__docs__"})
        assert capsys.readouterr().out == printed


def test_langchain_tool_answers_a_tool_call_with_text_images_and_the_result() -> None:
    tool = SandboxTool()
    assert tool.name == "execute_code"
    assert set(tool.args) == {"code", "language"}
    call = {"type": "tool_call", "id": "c1", "name": "execute_code", "args": {"code": PLOT, "language": "python"}}
    message = tool.invoke(call)
    assert isinstance(message, ToolMessage) and message.tool_call_id == "c1"
    assert isinstance(message.content, list)
    text, image = message.content
    assert isinstance(text, dict) and isinstance(image, dict)
    assert text["text"].startswith("exit code: 0\nstdout:\ndrawn")
    assert base64.b64decode(image["base64"]).startswith(PNG)
    assert message.artifact.exit_code == 0 and len(message.artifact.plots) == 1

    # Errors come back as text the model can act on; other languages get a sandbox of their own.
    failed = tool.invoke({"code": "import sys\nprint('partial')\nsys.exit(7)", "language": "python"})
    assert failed == "exit code: 7\nstdout:\npartial"
    node = tool.invoke({"code": "console.log(6 * 7)", "language": "javascript"})
    assert node == "exit code: 0\nstdout:\n42"
    unknown = tool.invoke({"code": "x", "language": "cobol"})
    assert unknown.startswith("error: LanguageNotSupportedError")


def test_langchain_tool_reuses_a_session_and_its_async_calls_cancel_the_run() -> None:
    async def scenario() -> None:
        async with AsyncSandboxSession(lang="python", default_timeout=2) as session:
            tool = SandboxTool(async_session=session)
            await tool.ainvoke({"code": "open('kept.txt', 'w').write('yes')", "language": "python"})
            assert await tool.ainvoke({"code": "print(open('kept.txt').read())"}) == "exit code: 0\nstdout:\nyes"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(tool.ainvoke({"code": "import time\ntime.sleep(300)"}), 1)
            # The sandbox is the same one, and its cancelled run is gone.
            listing = await session.execute_command("ps -eo args")
            assert "time.sleep(300)" not in listing.stdout
            timed_out = await tool.ainvoke({"code": "import time\nprint('before')\ntime.sleep(300)"})
            assert timed_out.startswith("error: SandboxTimeoutError") and "stdout:\nbefore" in timed_out

    asyncio.run(scenario())


def test_llamaindex_tool_calls_return_text_and_image_blocks() -> None:
    with SandboxSession(lang="python") as session:
        tool = sandbox_tool(session=session)
        assert tool.metadata.name == "execute_code"
        assert set(tool.metadata.get_parameters_dict()["properties"]) == {"code", "language"}
        tool.call(code="open('kept.txt', 'w').write('yes')", language="python")
        output = tool.call(code="print(open('kept.txt').read())", language="python")
        assert output.content == "exit code: 0\nstdout:\nyes" and not output.is_error

    plotted = asyncio.run(sandbox_tool().acall(code=PLOT, language="python"))
    text, image = plotted.blocks
    assert isinstance(text, TextBlock) and text.text.startswith("exit code: 0\nstdout:\ndrawn")
    assert isinstance(image, ImageBlock) and image.image_mimetype == "image/png"
    assert image.resolve_image().read().startswith(PNG)


def test_openai_tool_calls_of_both_apis_are_answered_in_their_own_shapes() -> None:
    assert TOOL_SPEC["function"]["name"] == RESPONSES_TOOL_SPEC["name"] == "execute_code"
    assert TOOL_SPEC["function"]["parameters"]["required"] == ["code", "language"]
    arguments = '{"language": "python", "code": "import matplotlib.pyplot as plt\\nplt.plot([1, 2])\\nprint(5)"}'

    chat_call = ChatCompletionMessageFunctionToolCall(
        id="call_a", type="function", function=Function(name="execute_code", arguments=arguments)
    )
    message = handle_tool_call(chat_call)
    TypeAdapter(ChatCompletionToolMessageParam).validate_python(message)
    assert message == {"role": "tool", "tool_call_id": "call_a", "content": "exit code: 0\nstdout:\n5\n(1 plot drawn)"}

    responses_call = ResponseFunctionToolCall(
        type="function_call", call_id="call_b", name="execute_code", arguments=arguments
    )
    item = asyncio.run(ahandle_tool_call(responses_call))
    TypeAdapter(ResponseInputItemParam).validate_python(item)
    assert item["type"] == "function_call_output" and item["call_id"] == "call_b"
    text, image = item["output"]
    assert text == {"type": "input_text", "text": "exit code: 0\nstdout:\n5\n(1 plot drawn)"}
    prefix = "data:image/png;base64,"
    assert image["type"] == "input_image" and image["image_url"].startswith(prefix)
    assert base64.b64decode(image["image_url"][len(prefix) :]).startswith(PNG)

    wrong = handle_tool_call({"id": "c", "type": "function", "function": {"name": "other", "arguments": "{}"}})
    assert wrong["content"].startswith("error: no tool named 'other'")
    broken = handle_tool_call({"type": "function_call", "call_id": "d", "name": "execute_code", "arguments": "{"})
    assert broken["output"].startswith("error: the arguments are not JSON")
