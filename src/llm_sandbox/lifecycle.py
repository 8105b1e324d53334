"""Creating, attaching, labelling and tracking sandboxes, so that nothing outlives its session unnoticed.

Every container the library creates carries labels (library, session id, creation time, owner pid and host), so
that ``llm_sandbox.cleanup`` can find what a crashed process left behind. Open sessions are closed at interpreter
exit; a container also ends by itself when its ``session_timeout`` passes, even if the host process is gone.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING

from llm_sandbox.backends.base import Backend, ContainerSpec
from llm_sandbox.config import SANDBOX_USER, SessionOptions
from llm_sandbox.errors import ImageNotFoundError, ImagePullError
from llm_sandbox.images import build_hint, default_image

if TYPE_CHECKING:
    from llm_sandbox.session import SandboxSession

logger = logging.getLogger(__name__)

LABEL_PREFIX = "io.llm-sandbox"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"

_open_sessions: weakref.WeakSet[SandboxSession] = weakref.WeakSet()
_lock = threading.Lock()


def labels_for(session_id: str) -> dict[str, str]:
    return {
        MANAGED_LABEL: "true",
        f"{LABEL_PREFIX}.session": session_id,
        f"{LABEL_PREFIX}.created-at": str(int(time.time())),
        f"{LABEL_PREFIX}.owner-pid": str(os.getpid()),
        f"{LABEL_PREFIX}.owner-host": socket.gethostname(),
    }


def code_user(options: SessionOptions) -> str:
    """The uid user code runs as in a container the library creates (never root unless the caller says so)."""
    return str(options.runtime_configs.get("user") or SANDBOX_USER)


def keep_alive_command(options: SessionOptions) -> list[str]:
    # PID 1 is the engine's init; its child ends the container when session_timeout passes.
    if options.session_timeout is None:
        return ["sleep", "infinity"]
    return ["sleep", str(max(1, int(options.session_timeout + 0.999)))]


def bind(options: SessionOptions, session_id: str) -> tuple[Backend, str | None]:
    """Build the backend and attach it to an existing container or create a new one.

    Returns the backend and the tag of an image built from ``dockerfile`` (None otherwise). On failure everything
    created so far is removed before the error propagates.
    """
    backend = options.backend.build(options.client, **options.backend_options)
    built: str | None = None
    try:
        if options.container_id is not None:
            backend.attach(options.container_id)
            return backend, None
        image = options.image
        if options.dockerfile is not None:
            built = image = _build_from_dockerfile(backend, options.dockerfile)
        spec = ContainerSpec(
            image=image or default_image(options.language.name),
            command=keep_alive_command(options),
            workdir=options.workdir,
            code_user=code_user(options),
            labels=labels_for(session_id),
            network_enabled=options.network.value == "full",
            limits=options.limits,
            runtime_configs=options.runtime_configs,
        )
        try:
            backend.create(spec)
        except ImagePullError as error:
            if image is not None:
                raise
            engine = options.backend.name.value
            raise ImageNotFoundError(
                f"the default {options.language.name} image {spec.image!r} is not available and cannot be pulled. "
                f"Build it locally with: {build_hint(options.language.name, engine)}"
            ) from error
        return backend, built
    except BaseException:
        try:
            backend.remove()
            if built is not None and not options.keep_template:
                backend.remove_image(built)
        finally:
            backend.close()
        raise


def _build_from_dockerfile(backend: Backend, dockerfile: str) -> str:
    with open(dockerfile, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    tag = f"llm-sandbox-build:{digest}"
    logger.info("building %s from %s", tag, dockerfile)
    backend.build_image(dockerfile, tag)
    return tag


class NetworkWindow:
    """Connects the container's network for the duration of a ``with`` block (installs), then cuts it again."""

    def __init__(self, backend: Backend | None) -> None:
        self._backend = backend

    def __enter__(self) -> NetworkWindow:
        if self._backend is not None:
            self._backend.set_network(True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._backend is not None:
            self._backend.set_network(False)


def track(session: SandboxSession) -> None:
    with _lock:
        _open_sessions.add(session)


def untrack(session: SandboxSession) -> None:
    with _lock:
        _open_sessions.discard(session)


@atexit.register
def _close_open_sessions() -> None:
    with _lock:
        sessions = list(_open_sessions)
    for session in sessions:
        try:
            session.close()
        except Exception:
            logger.warning("could not close session %s at exit", session.session_id[:12], exc_info=True)


def enable_console_logging() -> None:
    """``verbose=True``: show the library's progress on the console (the only handler the library ever adds)."""
    root = logging.getLogger("llm_sandbox")
    if not any(getattr(handler, "_llm_sandbox_console", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._llm_sandbox_console = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
