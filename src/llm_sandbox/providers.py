"""Where a session gets its sandbox and where it gives it back: a new container, or one the caller already runs.

A provider owns the life of what it hands out: ``NewSandboxes`` creates a hardened container (building the image
from a Dockerfile when asked, installing the spec's libraries) and removes it on release; ``AttachedContainer``
binds to the caller's container and only lets go of it. A failed ``acquire`` removes whatever it created before
the error propagates. (A pool is one more provider.)
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from typing import Any

from llm_sandbox.backends.base import Backend, ContainerSpec
from llm_sandbox.config import Network, SandboxSpec
from llm_sandbox.errors import ImageNotFoundError, ImagePullError, ValidationError
from llm_sandbox.images import build_hint, default_image
from llm_sandbox.labels import sandbox_labels
from llm_sandbox.sandbox import Sandbox
from llm_sandbox.writable_places import disk_plan

logger = logging.getLogger(__name__)


class SandboxProvider(ABC):
    """Hands out sandboxes and takes them back."""

    #: Whether a sandbox that died may be replaced by a new one (never for a container its owner runs).
    replaces_dead = False

    @abstractmethod
    def acquire(self) -> Sandbox:
        """A started sandbox; on failure nothing the call created is left."""

    @abstractmethod
    def release(self, sandbox: Sandbox) -> None:
        """Give a sandbox back (the provider removes it, or lets it go)."""


def keep_alive_command(lifetime_s: float | None) -> list[str]:
    # PID 1 is the engine's init; its child ends the container when the lifetime passes.
    if lifetime_s is None:
        return ["sleep", "infinity"]
    return ["sleep", str(max(1, int(lifetime_s + 0.999)))]


class NewSandboxes(SandboxProvider):
    """A new container for every ``acquire``, created from the spec, removed on ``release``."""

    replaces_dead = True

    def __init__(
        self,
        spec: SandboxSpec,
        *,
        client: Any = None,
        sandbox_id: str,
        lifetime_s: float | None = None,
        keep_template: bool = False,
    ) -> None:
        self.spec = spec
        self._client = client
        self._sandbox_id = sandbox_id
        self._lifetime_s = lifetime_s
        self._keep_template = keep_template

    def acquire(self) -> Sandbox:
        spec = self.spec
        backend, prefix = spec.backend.build(self._client, spec.backend_options)
        built: str | None = None
        try:
            image = spec.image
            if spec.dockerfile is not None:
                built = image = self._build_from_dockerfile(backend, spec.dockerfile)
            self._create(backend, image)
            sandbox = Sandbox(backend, spec, sandbox_id=self._sandbox_id, prefix=prefix, built_image=built)
            try:
                sandbox.start()
                if spec.libraries and not spec.skip_environment_setup:
                    sandbox.install(spec.libraries)
            except BaseException:
                sandbox.close()
                raise
            return sandbox
        except BaseException:
            dispose(backend, built, self._keep_template)
            raise

    def release(self, sandbox: Sandbox) -> None:
        try:
            sandbox.close()
        finally:
            dispose(sandbox.backend, sandbox.built_image, self._keep_template)

    def _create(self, backend: Backend, image: str | None) -> None:
        spec = self.spec
        container = ContainerSpec(
            image=image or default_image(spec.language.name),
            command=keep_alive_command(self._lifetime_s),
            workdir=spec.workdir,
            code_user=spec.code_user,
            labels=sandbox_labels(self._sandbox_id),
            network_enabled=spec.network is Network.FULL,
            limits=spec.limits,
            runtime_configs=spec.runtime_configs,
            relaxed=spec.relaxed,
            disk=disk_plan(spec),
            default_image=image is None,
        )
        try:
            backend.create(container)
        except ImagePullError as error:
            if image is not None:
                raise
            # The engine underneath (Micromamba runs on Docker or Podman) is what builds the image.
            engine = backend.images.engine if backend.images is not None else spec.backend.name
            raise ImageNotFoundError(
                f"the default {spec.language.name} image {container.image!r} is not available and cannot be "
                f"pulled. Build it locally with: {build_hint(spec.language.name, engine)}"
            ) from error

    @staticmethod
    def _build_from_dockerfile(backend: Backend, dockerfile: str) -> str:
        images = backend.images
        if images is None:
            raise ValidationError("this backend has no image store: dockerfile= needs Docker or Podman")
        with open(dockerfile, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()[:16]
        tag = f"llm-sandbox-build:{digest}"
        logger.info("building %s from %s", tag, dockerfile)
        images.build_image(dockerfile, tag)
        return tag


class AttachedContainer(SandboxProvider):
    """The caller's own container (or pod): attached on ``acquire``, only let go on ``release``."""

    def __init__(self, spec: SandboxSpec, container_id: str, *, client: Any = None) -> None:
        self.spec = spec
        self.container_id = container_id
        self._client = client

    def acquire(self) -> Sandbox:
        backend, prefix = self.spec.backend.build(self._client, self.spec.backend_options)
        try:
            backend.attach(self.container_id)
            sandbox = Sandbox(backend, self.spec, sandbox_id=self.container_id, prefix=prefix)
            sandbox.start()
            return sandbox
        except BaseException:
            backend.close()
            raise

    def release(self, sandbox: Sandbox) -> None:
        try:
            sandbox.close()
        finally:
            sandbox.backend.close()


def dispose(backend: Backend, built_image: str | None, keep_template: bool) -> None:
    """Remove a created container (and the image built for it, unless kept), then release the backend's client."""
    try:
        backend.remove()
        if built_image is not None and not keep_template and backend.images is not None:
            backend.images.remove_image(built_image)
    finally:
        backend.close()
