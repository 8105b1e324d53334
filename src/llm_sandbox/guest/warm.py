"""A process started ahead of the next run, so that a run does not wait for its interpreter to start.

The host names, with a run of code, the recipe of its language's spare (``Field.SPARE``, see ``spare_recipe``):
the argv of a process that starts the interpreter and then waits (``argv``), the plain run it stands for
(``run``, the code file as ``{file}``), the descriptor it waits on (``fd``) and what it is handed there (``hand``:
``{file}`` is the code file's path, ``{source}`` its content). After such a run the helper starts the spare while
the host reads the reply; the next run whose argv is that plain run hands it the file instead of starting the
interpreter. Each stub makes the program look exactly as it does under the plain command (its file name, argv,
stdin from /dev/null, errors without the stub's own frames). Any other request (a command, an install, a copy)
may change what a fresh interpreter would see, so it throws the spare away; so does a change of recipe, folder or
environment. A spare that died while it waited is thrown away too and the run starts cold.

Python's stub is here (it reads its path on stdin); the other languages' stubs live with their language on the
host, which sends them in the recipe.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, List, Optional, Tuple

    from llm_sandbox.guest.child import Child, write_to_child
    from llm_sandbox.guest.processes import descendants, kill_tree

    SpareKey = Tuple[Tuple[str, ...], Optional[str], Tuple[Tuple[str, str], ...]]  # argv, folder, environment

# Modules a waiting interpreter imports before the code arrives (comma-separated, in the run's environment; taken
# out of it before the code runs): an artifact session preloads its plotting library, the bulk of a plot's time.
WARM_IMPORTS = "LLM_SANDBOX_WARM_IMPORTS"
# A recipe's fields.
SPARE_ARGV = "argv"
SPARE_RUN = "run"
SPARE_FD = "fd"
SPARE_HAND = "hand"
FILE_SLOT = "{file}"
SOURCE_SLOT = "{source}"
# A spare handed the program's source takes it through a pipe written in one go before the run is watched: past
# what a pipe holds the write could wait on a program that waits on its output, so a larger file runs cold.
HAND_LIMIT = 60000
# The code file's path goes into stub code (an R string): only plain characters, else the run starts cold.
PLAIN_PATH_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./+-")

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


def spare_recipe(argv: List[str], run: List[str], fd: int = 3, hand: str = FILE_SLOT + "\n") -> Dict[str, Any]:
    """A recipe as ``Field.SPARE`` carries it. ``argv``: the waiting process; ``run``: the plain argv it replaces,
    ``{file}`` standing for the code file; ``fd``: the descriptor the stub reads ``hand`` on (stdin is /dev/null
    for any other; a stub on 0 must put /dev/null there itself)."""
    return {SPARE_ARGV: list(argv), SPARE_RUN: list(run), SPARE_FD: fd, SPARE_HAND: hand}


def python_recipe(python: str) -> Dict[str, Any]:
    return spare_recipe([python, "-u", "-c", WARM_STUB], [python, "-u", FILE_SLOT], fd=0)


def run_path(argv: List[str], recipe: Dict[str, Any]) -> Optional[str]:
    """The code file when ``argv`` is the recipe's plain run, else None."""
    template = recipe[SPARE_RUN]
    if len(argv) != len(template):
        return None
    path = None
    for index, expected in enumerate(template):  # (no zip(strict=...): the guest runs on Python 3.7 too)
        if expected == FILE_SLOT:
            path = argv[index]
        elif argv[index] != expected:
            return None
    if not path or not PLAIN_PATH_CHARACTERS.issuperset(path):
        return None
    return path


def handoff(recipe: Dict[str, Any], path: str) -> Optional[bytes]:
    """What the spare is handed for the code file at ``path`` (read as the caller acts), or None when it cannot
    be handed (the file is too large to go through the pipe in one write, or unreadable)."""
    hand = str(recipe[SPARE_HAND])
    data = hand.replace(FILE_SLOT, path).encode("utf-8", "surrogateescape")
    if SOURCE_SLOT not in hand:
        return data
    try:
        with open(path, "rb") as handle:
            source = handle.read(HAND_LIMIT + 1)
    except OSError:
        return None
    data = data.replace(SOURCE_SLOT.encode(), source, 1)
    return data if len(data) <= HAND_LIMIT else None


class Spares:
    """At most one process waiting for the next run."""

    def __init__(self) -> None:
        self.child: Optional[Child] = None
        self.key: Optional[SpareKey] = None

    @staticmethod
    def key_for(recipe: Dict[str, Any], cwd: Optional[str], env: Dict[str, str]) -> SpareKey:
        return tuple(recipe[SPARE_ARGV]), cwd, tuple(sorted(env.items()))

    def take(self, key: SpareKey) -> Optional[Child]:
        """The waiting process if it fits and still lives; else None (and it is thrown away)."""
        child, self.child = self.child, None
        if child is not None and self.key == key and child.poll() is None:
            return child
        if child is not None:
            discard(child)
        return None

    def prepare(
        self,
        recipe: Dict[str, Any],
        cwd: Optional[str],
        env: Dict[str, str],
        confined: bool,
        user: Optional[Tuple[int, int]] = None,
    ) -> None:
        self.discard()
        argv = [str(part) for part in recipe[SPARE_ARGV]]
        try:
            self.child = Child(
                argv, env, cwd, confined, stdin_pipe=True, user=user, pipe_fd=int(recipe.get(SPARE_FD) or 0)
            )
        except OSError:
            self.child = None
            return
        self.key = self.key_for(recipe, cwd, env)

    def discard(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            discard(child)


def discard(child: Child) -> None:
    """End a spare and whatever runs under it: a spare still starting may have children of its own (Rscript's
    shell script runs a few), which would otherwise outlive it as orphans of the helper's."""
    if child.returncode is None:
        under = [pid for pid, _state in descendants(child.pid)]
        kill_tree(child.pid)
        child.wait()
        for _attempt in range(200):  # orphans now (the helper is their subreaper): collect them once gone
            under = [pid for pid in under if not collected(pid)]
            if not under:
                break
            time.sleep(0.005)
    child.close()


def collected(pid: int) -> bool:
    """Whether ``pid`` is gone: reaped now, or not (or no longer) the helper's to reap."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def start_warm(child: Child, data: bytes) -> None:
    """Hand the code file (``handoff``) to a waiting process; closing the pipe tells it nothing more comes."""
    assert child.stdin_fd is not None
    try:
        write_to_child(child.stdin_fd, data)
    finally:
        os.close(child.stdin_fd)
        child.stdin_fd = None
