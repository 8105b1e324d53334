"""The reference implementation's module path of ``BaseSession``: here, :class:`~llm_sandbox.SandboxSession`, which
every session of this library derives from."""

from llm_sandbox.compat import BaseSession

__all__ = ["BaseSession"]
