"""The reference implementation's module path of its Kubernetes session class: a :class:`~llm_sandbox.SandboxSession`
with ``backend="kubernetes"`` (this module imports no engine SDK; the backend loads it when a session opens)."""

from llm_sandbox.compat import SandboxKubernetesSession

__all__ = ["SandboxKubernetesSession"]
