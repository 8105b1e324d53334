"""The reference implementation's module path of its Podman session class: a :class:`~llm_sandbox.SandboxSession`
with ``backend="podman"`` (this module imports no engine SDK; the backend loads it when a session opens)."""

from llm_sandbox.compat import SandboxPodmanSession

__all__ = ["SandboxPodmanSession"]
