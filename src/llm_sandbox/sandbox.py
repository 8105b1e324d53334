"""A provisioned sandbox: one container (or pod) bound to a backend, and the guest helper that runs code in it.

A ``Sandbox`` comes from a provider (``providers.py``: a new container, an attached one; a pool later) and knows
nothing of run policy: sessions apply their timeouts, output limits and callbacks to the sandbox they were handed.
It holds what the backend declared it guarantees (``capabilities``, less what an attached container does not
give), the argv prefix every command gets (an environment wrapper such as micromamba's, composed at bind time),
and its helper (``runner.GuestRunner``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from llm_sandbox.backends.base import ArchiveStream, Backend, BackendCapabilities, Command, DuplexStream, ExecOutput
from llm_sandbox.config import Network, SandboxSpec
from llm_sandbox.data import ConsoleOutput
from llm_sandbox.errors import ContainerError, LibraryInstallationError
from llm_sandbox.languages.base import ROOT_PATH
from llm_sandbox.runner import GuestRunner

logger = logging.getLogger(__name__)

# Installing can legitimately take minutes (large wheels); it gets its own bound instead of the run timeout.
INSTALL_TIMEOUT_S = 900.0
# Run as the code's uid: kill(-1) signals every process that uid may signal but the caller (the shell's own kill).
# Its status is 1 when nothing was left to kill; the script answers 0 then.
END_CODE_PROCESSES = "kill -9 -1 2>/dev/null; kill -9 -1 2>/dev/null; exit 0"


class Sandbox:
    """One sandbox: its backend, what it guarantees, and its helper."""

    def __init__(
        self,
        backend: Backend,
        spec: SandboxSpec,
        *,
        sandbox_id: str,
        prefix: Sequence[str] = (),
        built_image: str | None = None,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.id = sandbox_id
        self.prefix = tuple(prefix)
        self.built_image = built_image
        declared = spec.backend.capabilities
        self.capabilities: BackendCapabilities = declared if backend.owned else declared.for_attached()
        self.runner = GuestRunner(self)
        # Root changed the sandbox outside the places the code writes (an install, a copy where only root writes):
        # a pool cannot tell what changed, so it replaces such a sandbox rather than reset it.
        self.changed_by_root = False

    @property
    def owned(self) -> bool:
        """Whether the library created this sandbox (and so may reconfigure, reset and remove it)."""
        return self.backend.owned

    @property
    def container_id(self) -> str:
        return self.backend.container_id

    @property
    def died(self) -> bool:
        """The container stopped running under the helper: it cannot be used again."""
        return self.runner.died

    def start(self) -> None:
        """Start the helper; the sandbox is usable once this returns."""
        self.runner.start()

    def close(self) -> None:
        """Stop the helper. The container itself is the provider's to remove or let go."""
        self.runner.close()

    # The channel, with the sandbox's command prefix -----------------------------------------------------------

    def exec(self, command: Command) -> ExecOutput:
        return self.backend.exec(command.wrapped(self.prefix))

    def open_stream(self, command: Command) -> DuplexStream:
        return self.backend.open_stream(command.wrapped(self.prefix))

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        self.changed_by_root = True
        self.backend.put_archive(path, data, keep_owner=keep_owner)

    def get_archive(self, path: str) -> ArchiveStream:
        return self.backend.get_archive(path)

    def is_running(self) -> bool:
        return self.backend.is_running()

    # Operations ------------------------------------------------------------------------------------------------

    def end_code_processes(self) -> bool:
        """Kill every process of the code's uid (spare interpreters, long-lived children, whatever a run left in
        the background), through the engine: ``kill -9 -1`` as that uid reaches all of them and nothing else,
        since the sandbox has its own pid namespace and the uid to itself. Twice, for processes forked meanwhile.

        Only where the helper is separated (it runs as root and survives); elsewhere the kill would end the helper
        too, and nothing is done (False)."""
        if not (self.owned and self.runner.separated and self.capabilities.pid_namespace):
            logger.debug("the helper is not separated from the code: its processes are not killed before installs")
            return False
        result = self.backend.exec(
            Command(
                ["/bin/sh", "-c", END_CODE_PROCESSES],
                user=self.spec.code_user,
                environment={"PATH": ROOT_PATH},
            )
        )
        if result.exit_code != 0:
            said = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
            raise ContainerError(f"could not end the code's processes before the install: {said}")
        return True

    @contextmanager
    def network_window(self) -> Iterator[None]:
        """The network connected for the ``with`` block (installs under network="install-only"), then cut again.

        Before it opens, every process of the code is ended (``end_code_processes``): nothing a run started is
        alive while the network is on. The backend connects the container to a network made for this window alone
        (no other container on it). If the network cannot be cut again, the container is removed and the error
        says so: the session makes a new sandbox on its next call."""
        switch = self.owned and self.spec.network is Network.INSTALL_ONLY and self.capabilities.network_switch
        if switch:
            self.end_code_processes()
            self.backend.set_network(True)
        try:
            yield
        finally:
            if switch:
                self._close_network()

    def _close_network(self) -> None:
        try:
            self.backend.set_network(False)
        except Exception as error:
            logger.warning("cutting the network after an install failed (%s); removing the sandbox", error)
            self.runner.died = True
            try:
                self.runner.close()
            finally:
                try:
                    self.backend.remove()
                except Exception as removing:  # noqa: BLE001 - reported; the sweep finds it by its labels
                    logger.warning("removing the sandbox failed too: %s", removing)
            raise ContainerError(
                "the sandbox's network could not be switched off again after the install, so the sandbox was "
                f"removed ({error}); the next call creates a new one"
            ) from error

    def install(self, libraries: Sequence[str], *, encoding_errors: str = "replace") -> ConsoleOutput:
        """Install libraries with the language's package manager; a failure raises with the manager's output."""
        names = list(libraries)
        if not names:
            return ConsoleOutput()
        argv = self.runner.install_argv(names)
        self.changed_by_root = True
        with self.network_window():
            output = self.runner.run_install(argv, timeout=INSTALL_TIMEOUT_S, encoding_errors=encoding_errors)
        if output.exit_code != 0:
            tail = (output.stderr or output.stdout).strip()[-2000:]
            raise LibraryInstallationError(
                f"installing {', '.join(names)} failed (exit {output.exit_code}):\n{tail}", output=output
            )
        return output

    def reset(self) -> None:
        """Make the sandbox fit for its next user: every process of the code's is killed and what the code wrote
        in the workdir, the temporary folders and its library prefix is removed. (Only sandboxes the library
        created can be reset.)"""
        if not self.owned:
            raise ContainerError("an attached container is its owner's: the library does not reset it")
        self.runner.reset()

    def commit(self, repository: str, tag: str) -> str:
        """Save the sandbox as a new image (``repository:tag``) and return its reference."""
        images = self.backend.images
        if images is None or not self.capabilities.commit:
            raise ContainerError(f"the {self.spec.backend.name} backend cannot save this sandbox as an image")
        return images.commit(repository, tag)
