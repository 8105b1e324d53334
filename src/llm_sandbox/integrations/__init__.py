"""Ready-made sandbox tools for agent frameworks, each in its own module and behind its own extra:

- ``llm_sandbox.integrations.langchain``: ``SandboxTool``, a LangChain tool (``pip install 'llm-sandbox[langchain]'``);
- ``llm_sandbox.integrations.llamaindex``: ``sandbox_tool()``, a LlamaIndex ``FunctionTool`` (``[llamaindex]``);
- ``llm_sandbox.integrations.openai``: ``TOOL_SPEC`` and ``handle_tool_call()`` for OpenAI function calling
  (Chat Completions and Responses; ``[openai]``).

All three run a call the same way (``tool_runs``): in the session the caller handed over when its language matches,
else in a new sandbox for that call alone; the model gets the exit code, the output and any error as text, and the
plots the code drew as images where the framework carries images.
"""
