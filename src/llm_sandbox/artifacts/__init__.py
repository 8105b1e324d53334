"""Artifacts of a run: the figures it draws and the files it writes into the outputs folder, brought back with its
output in the same reply.

``ArtifactSandboxSession`` is the session; ``ArtifactCapture`` (with ``ArtifactLimits``) is what it stands on, and
any other session that runs code through the runner can use it the same way. ``sandbox/`` holds the code that
captures figures inside the sandbox (``python_capture.install(folder)`` also serves a long-lived interpreter, which
calls ``flush()`` after each piece of code).
"""

from llm_sandbox.artifacts.capture import ArtifactCapture, ArtifactLimits, Artifacts
from llm_sandbox.artifacts.session import ArtifactSandboxSession

__all__ = ["ArtifactCapture", "ArtifactLimits", "ArtifactSandboxSession", "Artifacts"]
