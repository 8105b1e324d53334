"""Warm pools of sandboxes, each made fresh for its next user, keyed by the libraries a run needs.

::

    from llm_sandbox import SandboxSession
    from llm_sandbox.pool import PoolConfig, create_pool_manager

    with create_pool_manager(lang="python", config=PoolConfig(max_pool_size=4, min_pool_size=2)) as pool:
        with SandboxSession(pool=pool) as session:
            print(session.run("print(1 + 1)").stdout)
"""

from llm_sandbox.compat import ArtifactPooledSandboxSession
from llm_sandbox.errors import PoolClosedError, PoolExhaustedError, PoolHealthCheckError
from llm_sandbox.pool.config import ExhaustionStrategy, PoolConfig
from llm_sandbox.pool.factory import create_pool_manager
from llm_sandbox.pool.manager import ContainerPoolManager, ContainerState, PooledContainer
from llm_sandbox.pool.session import PooledSandboxSession

__all__ = [
    "ArtifactPooledSandboxSession",
    "ContainerPoolManager",
    "ContainerState",
    "ExhaustionStrategy",
    "PoolClosedError",
    "PoolConfig",
    "PoolExhaustedError",
    "PoolHealthCheckError",
    "PooledContainer",
    "PooledSandboxSession",
    "create_pool_manager",
]
