"""llm_sandbox: run untrusted, LLM-generated code safely inside containers."""
from llm_sandbox._version import __version__

__all__ = ["__version__"]
