"""asyncio sessions: ``AsyncSandboxSession``, ``AsyncArtifactSandboxSession`` and ``AsyncInteractiveSandboxSession``,
whose runs really cancel.

Runs and commands go to the sandbox's helper over the event loop (no thread waits for them on Docker, Podman and
Micromamba); cancelling one kills its processes in the sandbox and leaves the session usable. The calls that are
engine work (open, close, installs, copies), and interactive cells, run on a worker thread.
"""

from llm_sandbox.aio.artifacts import AsyncArtifactSandboxSession
from llm_sandbox.aio.events import StreamEvent
from llm_sandbox.aio.interactive import AsyncInteractiveSandboxSession
from llm_sandbox.aio.session import AsyncSandboxSession

__all__ = ["AsyncArtifactSandboxSession", "AsyncInteractiveSandboxSession", "AsyncSandboxSession", "StreamEvent"]
