"""The reference implementation's module path of ``SessionConfig``: here, the session's options
(:class:`~llm_sandbox.config.SessionOptions`, a session's ``options``)."""

from llm_sandbox.compat import SessionConfig

__all__ = ["SessionConfig"]
