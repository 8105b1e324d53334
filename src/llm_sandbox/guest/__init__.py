"""Code that runs inside the sandbox: its modules, joined into one source and sent to the guest at session start.

The guest is started as ``python3 -c <source>``, so it cannot import its sibling modules: they are joined, in the
order below, into one program. Each module names what it uses from the others under ``TYPE_CHECKING`` (a plain
``False`` there, so that nothing is imported at run time while linters and type checkers still see the names).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

MODULES = ("wire", "confine", "processes", "child", "files", "warm", "agent")
# The command line only holds this loader: the program itself comes first on stdin (length, then source), so that
# argv stays short (and `ps` inside the sandbox readable).
BOOTSTRAP = (
    "import struct,sys;i=sys.stdin.buffer;n=struct.unpack('>I',i.read(4))[0];"
    "exec(compile(i.read(n),'llm-sandbox-guest','exec'))"
)
FUTURE = "from __future__ import annotations\n"


def agent_payload() -> bytes:
    """What the host sends first on the helper's stdin: the program, length first, as BOOTSTRAP reads it."""
    source = agent_source().encode("utf-8")
    return len(source).to_bytes(4, "big") + source


@cache
def agent_source() -> str:
    """The guest program: the modules joined, with the one future import they share hoisted to the top."""
    folder = resources.files(__package__)
    parts = [folder.joinpath(f"{name}.py").read_text(encoding="utf-8").replace(FUTURE, "") for name in MODULES]
    return FUTURE + "\n".join(parts)
