"""Backends whose installs are a step of their own rather than a run of the guest helper.

On Docker and Podman an install runs where the code runs, with the sandbox's network switched on for it. A sandbox
whose network cannot be switched while it runs (Bubblewrap: its network namespace is fixed when it starts) runs
each install instead as a separate process with the network, started by the backend (``install_step``), which
decides what that step may write.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from llm_sandbox.backends.base import Command, ExecOutput


@runtime_checkable
class SeparateInstalls(Protocol):
    """A backend that runs installs as a step of its own."""

    def install_step(self, command: Command) -> ExecOutput:
        """Run an install argv to completion as ``command.user``, with the network when the install window is open
        (``set_network(True)``), bounded like ``Channel.exec``."""
