"""Code that runs inside the sandbox, shipped as package data and sent to the guest at session start."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def agent_source() -> str:
    """The source of the resident guest helper (``agent.py``)."""
    return resources.files(__package__).joinpath("agent.py").read_text(encoding="utf-8")
