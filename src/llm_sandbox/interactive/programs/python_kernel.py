"""The Python kernel of an interactive session: runs inside the sandbox, as the code's user, one cell per request.

It is started as ``python -u -c <this source> PLOT_FOLDER HISTORY_SIZE MODE READY_TAG`` and talks with the helper
over its standard streams. Each cell comes on stdin as a line ``TAG SIZE`` and SIZE bytes of UTF-8 source; the
cell's output goes to stdout and stderr as it is written, and then the line ``\\x1eTAG\\x1eSTATUS`` on stdout
ends it (STATUS 0: the cell completed; anything else: it raised). At start the line ``\\x1eREADY_TAG\\x1eKIND``
says which kind of kernel runs.

Where IPython is installed (and MODE is not "plain") the cells run in IPython's own ``InteractiveShell``: its
magics (``%pip``, ``!cmd``), its display of a cell's last value (``Out[1]: 42``) and its tracebacks are the ones
users know from notebooks, and nothing here re-implements them. Elsewhere the standard library's REPL machinery
runs them (``code.InteractiveInterpreter``: every statement but the last compiled for ``exec``, the last in the
REPL's ``single`` mode, so that its value is shown as the plain interpreter shows it).

A timed-out cell is interrupted with SIGINT: Python raises KeyboardInterrupt in the cell, which ends like any
cell that raised, and the names it defined before stay. Between cells SIGINT is ignored, so an interrupt that comes
late cannot hit this loop. Figures left open by a cell (matplotlib, Agg backend) are saved as PNG files into
PLOT_FOLDER and closed before the cell's end line, so they come back with that cell.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Any

END = "\x1e"


def read_cell(stream: object) -> tuple[str, str] | None:
    """The next cell's tag and source, or None when the input ended."""
    read_line = stream.readline  # type: ignore[attr-defined]
    header = read_line()
    if not header:
        return None
    tag, _, size = header.decode("ascii").strip().partition(" ")
    data = stream.read(int(size))  # type: ignore[attr-defined]
    return tag, data.decode("utf-8", "replace")


def end_cell(tag: str, status: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write(f"{END}{tag}{END}{status}\n")
    sys.stdout.flush()


def save_figures(folder: str) -> None:
    """Save every open matplotlib figure as PNG into ``folder`` and close it (as a notebook shows them)."""
    pyplot: Any = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    numbers = pyplot.get_fignums()
    if not numbers:
        return
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for index, number in enumerate(numbers):
        figure = pyplot.figure(number)
        figure.savefig(os.path.join(folder, f"plot-{index:03d}.png"), format="png")
    pyplot.close("all")


class PlainKernel:
    """Cells run by the standard library's REPL machinery (``code.InteractiveInterpreter``)."""

    kind = "python"

    def __init__(self) -> None:
        import code

        kernel = self

        class Interpreter(code.InteractiveInterpreter):
            # The REPL's own reporting (its traceback trims this file's frames), noted as the cell's failure.
            def showtraceback(self) -> None:
                kernel.failed = True
                super().showtraceback()

            def showsyntaxerror(self, filename: str | None = None, **kwargs: object) -> None:
                kernel.failed = True
                super().showsyntaxerror(filename)

        self.namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.interpreter = Interpreter(self.namespace)
        self.failed = False
        self.count = 0

    def run(self, source: str) -> int:
        import ast

        self.failed = False
        self.count += 1
        name = f"<cell-{self.count}>"
        try:
            tree = ast.parse(source, name, "exec")
        except (SyntaxError, ValueError, OverflowError):
            self.interpreter.showsyntaxerror(name)
            return 1
        body = tree.body
        last = body[-1:] if body and isinstance(body[-1], ast.Expr) else []
        parts: list[tuple[ast.Module | ast.Interactive, str]] = [
            (ast.Module(body=body[: len(body) - len(last)], type_ignores=[]), "exec")
        ]
        if last:
            parts.append((ast.Interactive(body=last), "single"))
        for part, mode in parts:
            try:
                compiled = compile(part, name, mode)
            except (SyntaxError, ValueError, OverflowError):
                self.interpreter.showsyntaxerror(name)
                return 1
            try:
                self.interpreter.runcode(compiled)
            except SystemExit as stop:  # a cell's exit() ends the cell, not the session's state
                return report_exit(stop)
            if self.failed:
                return 1
        return 0


def report_exit(stop: SystemExit) -> int:
    code = stop.code
    sys.stderr.write("SystemExit: {}\n".format("" if code is None else code))
    return code if isinstance(code, int) and code else 1


class IPythonKernel:
    """Cells run by IPython's ``InteractiveShell`` (its tracebacks go to stderr, without colours)."""

    kind = "ipython"

    def __init__(self, history_size: int) -> None:
        from IPython.core.interactiveshell import InteractiveShell  # type: ignore[import-not-found,unused-ignore]
        from traitlets.config import Config  # type: ignore[import-not-found,unused-ignore]

        class Shell(InteractiveShell):  # type: ignore[misc,unused-ignore]
            def _showtraceback(self, etype: object, evalue: object, stb: object) -> None:
                sys.stdout.flush()
                sys.stderr.write(self.InteractiveTB.stb2text(stb) + "\n")
                sys.stderr.flush()

        config = Config()
        config.HistoryManager.hist_file = ":memory:"  # no history database in the sandbox's folders
        config.InteractiveShell.colors = "NoColor"
        config.InteractiveShell.cache_size = history_size
        self.shell = Shell.instance(config=config)

    def run(self, source: str) -> int:
        try:
            result = self.shell.run_cell(source, store_history=True)
        except SystemExit as stop:
            return report_exit(stop)
        return 0 if result.success else 1


def make_kernel(mode: str, history_size: int) -> PlainKernel | IPythonKernel:
    if mode != "plain":
        try:
            return IPythonKernel(history_size)
        except ImportError:
            pass
    return PlainKernel()


def main() -> None:
    plot_folder, history_size, mode, ready_tag = sys.argv[1:5]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The cells' stdin is /dev/null: the requests' stream moves to a descriptor of its own that a cell's
    # input() or sys.stdin.read() cannot drain.
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - it lives as long as the kernel
    os.environ.setdefault("MPLBACKEND", "Agg")
    warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")
    warnings.filterwarnings("ignore", message=".*non-GUI backend.*")
    sys.argv = [""]
    kernel = make_kernel(mode, int(history_size))
    end_cell(ready_tag, kernel.kind)
    buffered = __import__("io").BufferedReader(requests)
    while True:
        cell = read_cell(buffered)
        if cell is None:
            break
        tag, source = cell
        status: object = 1
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                status = kernel.run(source)
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            save_figures(os.path.join(plot_folder, tag))
        except KeyboardInterrupt:  # an interrupt that came between the cell's end and the line above
            sys.stderr.write("KeyboardInterrupt\n")
        except BaseException as error:  # noqa: BLE001 - the kernel outlives whatever a cell did
            sys.stderr.write(f"{type(error).__name__}: {error}\n")
            status = 1
        end_cell(tag, status)


if __name__ == "__main__":
    main()
