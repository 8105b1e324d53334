"""The reference implementation's module path of its Micromamba session class: a :class:`~llm_sandbox.SandboxSession`
with ``backend="micromamba"`` (this module imports no engine SDK; the backend loads it when a session opens)."""

from llm_sandbox.compat import MicromambaSession

__all__ = ["MicromambaSession"]
