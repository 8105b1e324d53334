"""``create_pool_manager``: a pool from the same options a session takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_sandbox.const import SandboxBackend
from llm_sandbox.errors import UnknownOptionError, ValidationError
from llm_sandbox.pool.config import PoolConfig
from llm_sandbox.pool.manager import ContainerPoolManager
from llm_sandbox.session import SandboxSession

# Session options that mean nothing for a pool, and what to do instead.
NOT_FOR_POOLS = {
    "container_id": "a pool makes its own sandboxes; attach to a container with SandboxSession(container_id=...)",
    "commit_container": "a pooled sandbox is made fresh for its next user, never saved as an image",
    "keep_template": "a pool keeps what it built until it closes",
    "pool": "a pool cannot take its sandboxes from another pool",
}


def create_pool_manager(
    client: Any = None,
    backend: SandboxBackend | str = SandboxBackend.DOCKER,
    config: PoolConfig | None = None,
    lang: str = "python",
    image: str | None = None,
    libraries: Sequence[str] | None = None,
    **session_options: Any,
) -> ContainerPoolManager:
    """A pool of sandboxes made as ``SandboxSession(backend=..., lang=..., image=..., libraries=..., **options)``
    would make one (``libraries`` are the pool's own, in every sandbox it makes)."""
    for name, instead in NOT_FOR_POOLS.items():
        if session_options.get(name):
            raise ValidationError(f"{name} cannot be used with a pool: {instead}")
    if config is not None and not isinstance(config, PoolConfig):
        raise ValidationError(f"config must be a PoolConfig, not {type(config).__name__}")
    template = SandboxSession(
        client=client, backend=backend, lang=lang, image=image, libraries=libraries, **session_options
    )
    entry = template.options.sandbox.backend
    if not entry.capabilities.pooling:
        raise UnknownOptionError(
            f"the {entry.name} backend does not declare pooling: it cannot reset a sandbox between users; use "
            "one SandboxSession per user on it, or a pool on a backend that declares pooling (docker, podman, "
            "kubernetes)"
        )
    return ContainerPoolManager(template.options, config)
