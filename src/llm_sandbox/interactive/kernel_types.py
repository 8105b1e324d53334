"""Which kernel an interactive session runs, and the kernel program of each language that keeps state."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources


class KernelType(str, Enum):
    """The kernel behind an interactive session.

    ``IPYTHON`` (the default): Python cells run in IPython's shell where the sandbox's Python has IPython (magics,
    ``Out[n]:`` values), in the plain interpreter's REPL semantics otherwise; ``PLAIN``: always the plain
    interpreter's. JavaScript, Ruby and R run in their own language's REPL semantics with either.
    """

    IPYTHON = "ipython"
    PLAIN = "plain"


@dataclass(frozen=True)
class KernelProgram:
    """A language's kernel: the program (a file of ``programs/``) and the argv that runs it, a template where
    ``{interpreter}`` is the language's interpreter, ``{source}`` the program's text, ``{ready}`` the tag of the line
    it writes once it is ready and ``{plots}`` the folder its figures go to (Python's also takes ``{history}`` and
    ``{mode}``)."""

    file: str
    argv: tuple[str, ...]
    interpreter: str = ""  # empty: the sandbox's Python (the one the session runs code with)

    @property
    def source(self) -> str:
        return _program_source(self.file)


KERNELS: dict[str, KernelProgram] = {
    "python": KernelProgram(
        "python_kernel.py", ("{interpreter}", "-u", "-c", "{source}", "{plots}", "{history}", "{mode}", "{ready}")
    ),
    "javascript": KernelProgram("node_kernel.js", ("{interpreter}", "-e", "{source}", "{ready}"), "node"),
    "ruby": KernelProgram("ruby_kernel.rb", ("{interpreter}", "-e", "{source}", "{ready}"), "ruby"),
    "r": KernelProgram("r_kernel.R", ("{interpreter}", "--no-echo", "-e", "{source}", "{plots}", "{ready}"), "Rscript"),
}


@cache
def _program_source(file: str) -> str:
    return resources.files(__package__).joinpath("programs").joinpath(file).read_text(encoding="utf-8")
