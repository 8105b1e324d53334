"""Sessions that take their sandbox from a pool: ``SandboxSession(pool=manager)`` and ``PooledSandboxSession``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llm_sandbox.providers import SandboxProvider
from llm_sandbox.session import SandboxSession

if TYPE_CHECKING:
    from llm_sandbox.pool.manager import ContainerPoolManager, PooledContainer
    from llm_sandbox.sandbox import Sandbox


class PooledSandboxes(SandboxProvider):
    """A session's provider when it has a pool: a sandbox of the pool for the session's libraries, given back to
    the pool (made fresh for the next user) when the session ends."""

    replaces_dead = True  # a pooled sandbox that died goes back (the pool replaces it) and another is taken

    def __init__(self, pool: ContainerPoolManager, libraries: Sequence[str]) -> None:
        self.pool = pool
        self.libraries = tuple(libraries)
        self._leases: dict[int, PooledContainer] = {}

    def acquire(self) -> Sandbox:
        container = self.pool.acquire(self.libraries)
        self._leases[id(container.sandbox)] = container
        return container.sandbox

    def release(self, sandbox: Sandbox) -> None:
        container = self._leases.pop(id(sandbox), None)
        if container is not None:
            self.pool.release(container)


class PooledSandboxSession(SandboxSession):
    """A session on a sandbox of ``pool_manager`` (the same as ``SandboxSession(pool=pool_manager, ...)``): its
    language, image and backend are the pool's; every run option is the session's own."""

    def __init__(self, pool_manager: ContainerPoolManager, **options: Any) -> None:
        super().__init__(pool=pool_manager, **options)
