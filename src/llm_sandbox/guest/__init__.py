"""Code that runs inside the sandbox: its modules, joined into one source and sent to the guest at session start.

The guest is started as ``python3 -c <source>``, so it cannot import its sibling modules: they are joined, in the
order below, into one program. Each module names what it uses from the others under ``TYPE_CHECKING`` (a plain
``False`` there, so that nothing is imported at run time while linters and type checkers still see the names).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

MODULES = ("wire", "confine", "processes", "child", "files", "agent")
FUTURE = "from __future__ import annotations\n"


@cache
def agent_source() -> str:
    """The guest program: the modules joined, with the one future import they share hoisted to the top."""
    folder = resources.files(__package__)
    parts = [folder.joinpath(f"{name}.py").read_text(encoding="utf-8").replace(FUTURE, "") for name in MODULES]
    return FUTURE + "\n".join(parts)
