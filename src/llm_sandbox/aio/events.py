"""What ``AsyncSandboxSession.stream`` yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["stdout", "stderr", "exit"]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A piece of a run's output as it happened (``kind`` "stdout" or "stderr", the text in ``data``), or the end
    of the run (``kind`` "exit", ``data`` empty, ``exit_code`` the run's real exit code)."""

    kind: EventKind
    data: str = ""
    exit_code: int | None = None
