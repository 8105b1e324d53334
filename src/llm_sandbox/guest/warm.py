"""A Python interpreter started ahead of the next run, so that a run does not wait for Python to start.

After a Python run the helper starts the same interpreter again, with a small stub, while the host reads the reply
(and, when the run's environment names them in ``WARM_IMPORTS``, has it import those modules meanwhile).
The next Python run hands it the code file's path on its stdin; the stub then makes ``__main__`` look exactly as it
does for ``python file.py`` (``__file__``, ``sys.argv``, ``sys.path[0]``, stdin from /dev/null, tracebacks without
the stub's own frame) and runs the file. Any other request (a command, an install, a copy) may change what a fresh
interpreter would see, so it throws the spare away; so does a change of interpreter, folder or environment.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Dict, List, Optional, Tuple

    from llm_sandbox.guest.child import Child, write_to_child

    SpareKey = Tuple[str, Optional[str], Tuple[Tuple[str, str], ...]]  # interpreter, folder, environment

# Modules a waiting interpreter imports before the code arrives (comma-separated, in the run's environment; taken
# out of it before the code runs): an artifact session preloads its plotting library, the bulk of a plot's time.
WARM_IMPORTS = "LLM_SANDBOX_WARM_IMPORTS"

WARM_STUB = r"""
def _llm_sandbox_main():
    import os, sys
    preload = os.environ.pop("LLM_SANDBOX_WARM_IMPORTS", "")
    if preload:
        # Whatever the imports print (a library's warning) is not the next program's output.
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(os.devnull, "w")
        try:
            for name in preload.split(","):
                try:
                    __import__(name)
                except Exception:
                    pass  # the program's own import will say what is wrong
        finally:
            sys.stdout.close()
            sys.stdout, sys.stderr = streams
    line = sys.stdin.buffer.readline()
    if not line:
        raise SystemExit(0)
    path = line.decode("utf-8", "surrogateescape").rstrip("\n")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    with open(path, "rb") as handle:
        source = handle.read()
    sys.argv[:] = [path]
    sys.path[0] = os.path.dirname(path)

    def hook(kind, value, trace):
        while trace is not None and trace.tb_frame.f_code.co_filename == "<string>":
            trace = trace.tb_next
        if isinstance(value, BaseException):
            value = value.with_traceback(trace)  # the printer reads the exception's own traceback
        sys.__excepthook__(kind, value, trace)

    sys.excepthook = hook
    import __main__
    namespace = __main__.__dict__
    namespace.pop("_llm_sandbox_main", None)
    namespace["__file__"] = path
    exec(compile(source, path, "exec"), namespace)


_llm_sandbox_main()
"""


class Spares:
    """At most one interpreter waiting for the next Python run."""

    def __init__(self) -> None:
        self.child: Optional[Child] = None
        self.key: Optional[SpareKey] = None

    @staticmethod
    def key_for(
        python: str, cwd: Optional[str], env: Dict[str, str]
    ) -> Tuple[str, Optional[str], Tuple[Tuple[str, str], ...]]:
        return python, cwd, tuple(sorted(env.items()))

    def take(self, key: SpareKey) -> Optional[Child]:
        """The waiting interpreter if it fits and still lives; else None (and it is thrown away)."""
        child, self.child = self.child, None
        if child is not None and self.key == key and child.poll() is None:
            return child
        if child is not None:
            discard(child)
        return None

    def prepare(
        self,
        python: str,
        cwd: Optional[str],
        env: Dict[str, str],
        confined: bool,
        user: Optional[Tuple[int, int]] = None,
    ) -> None:
        self.discard()
        try:
            self.child = Child([python, "-u", "-c", WARM_STUB], env, cwd, confined, stdin_pipe=True, user=user)
        except OSError:
            self.child = None
            return
        self.key = self.key_for(python, cwd, env)

    def discard(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            discard(child)


def discard(child: Child) -> None:
    child.kill()
    child.wait()
    child.close()


def start_warm(child: Child, path: str) -> None:
    """Hand the code file to a waiting interpreter."""
    assert child.stdin_fd is not None
    try:
        write_to_child(child.stdin_fd, (path + "\n").encode("utf-8", "surrogateescape"))
    finally:
        os.close(child.stdin_fd)
        child.stdin_fd = None


def warm_argv_path(argv: List[str], python: str) -> Optional[str]:
    """The code file when ``argv`` is a plain ``python -u FILE`` run of ``python``, else None."""
    if len(argv) == 3 and argv[0] == python and argv[1] == "-u":
        return argv[2]
    return None
