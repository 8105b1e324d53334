"""Code that runs inside the sandbox: its modules, joined into one source and sent to the guest at session start.

The guest is started as ``python3 -c <source>``, so it cannot import its sibling modules: they are joined, in the
order below, into one program. Each module names what it uses from the others under ``TYPE_CHECKING`` (a plain
``False`` there, so that nothing is imported at run time while linters and type checkers still see the names).
"""

from __future__ import annotations

import marshal
import sys
from functools import cache
from importlib import resources

MODULES = ("protocol", "wire", "confine", "processes", "child", "disk", "filesystem", "warm", "longlived", "agent")
# The command line only holds this loader. The program comes first on stdin: an interpreter tag and the program
# compiled by the host (used when the guest's interpreter is the same, which saves compiling it at every start),
# then its source (for any other interpreter); each length-prefixed. argv stays short and `ps` readable.
BOOTSTRAP = (
    "import marshal,struct,sys;i=sys.stdin.buffer;r=lambda:i.read(struct.unpack('>I',i.read(4))[0]);"
    "t,c,s=r(),r(),r();"
    "exec(marshal.loads(c) if t==sys.implementation.cache_tag.encode() else compile(s,'llm-sandbox-guest','exec'))"
)
FUTURE = "from __future__ import annotations\n"


@cache
def agent_payload() -> bytes:
    """What the host sends first on the helper's stdin, as BOOTSTRAP reads it."""
    source = agent_source().encode("utf-8")
    code = marshal.dumps(compile(source, "llm-sandbox-guest", "exec"))
    tag = (sys.implementation.cache_tag or "").encode()
    return b"".join(len(part).to_bytes(4, "big") + part for part in (tag, code, source))


@cache
def agent_source() -> str:
    """The guest program: the modules joined, with the one future import they share hoisted to the top."""
    folder = resources.files(__package__)
    parts = [folder.joinpath(f"{name}.py").read_text(encoding="utf-8").replace(FUTURE, "") for name in MODULES]
    return FUTURE + "\n".join(parts)
