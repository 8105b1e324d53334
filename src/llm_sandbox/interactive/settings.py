"""InteractiveSettings: an interactive session's kernel settings as one object (the reference implementation's
``llm_sandbox.interactive.InteractiveSettings``), for ``InteractiveSandboxSession(interactive_settings=...)``."""

from __future__ import annotations

from dataclasses import dataclass

from llm_sandbox.errors import ValidationError
from llm_sandbox.interactive.kernel_types import KernelType


@dataclass
class InteractiveSettings:
    """``kernel_type``, ``max_memory``, ``history_size`` and ``timeout`` mean what the session's arguments of the
    same names mean. ``poll_interval`` is accepted for code written for the reference, which polls result files;
    here a cell's result comes back on the helper's stream as soon as it ends, so nothing polls and it is unused.
    """

    kernel_type: KernelType = KernelType.IPYTHON
    max_memory: str | None = None
    history_size: int = 1000
    timeout: float | None = 300.0
    poll_interval: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.history_size, bool) or not isinstance(self.history_size, int) or self.history_size < 0:
            raise ValidationError(f"history_size must be a whole number >= 0, not {self.history_size!r}")
        if isinstance(self.poll_interval, bool) or not self.poll_interval > 0:
            raise ValidationError(f"poll_interval must be a positive number of seconds, not {self.poll_interval!r}")
