"""The reference implementation's module path of its Docker session class: a :class:`~llm_sandbox.SandboxSession`
with ``backend="docker"`` (this module imports no engine SDK; the backend loads it when a session opens)."""

from llm_sandbox.compat import SandboxDockerSession

__all__ = ["SandboxDockerSession"]
