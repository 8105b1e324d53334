"""How each language's figures are captured: the files a run writes beside its code file, and how its argv starts
them. Python starts a launcher in place of the code file (the same ``python -u FILE`` shape, so the warm
interpreter still serves it, with pyplot imported ahead); R reads a profile through ``R_PROFILE_USER``. The figures
land in ``PLOTS_FOLDER`` of the run's temporary folder, from where the run's reply brings them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from llm_sandbox.errors import LanguageNotSupportPlotError
from llm_sandbox.guest.warm import WARM_IMPORTS
from llm_sandbox.languages.base import RUN_DIR
from llm_sandbox.messages import CodeFile

PLOTS_FOLDER = "plots"  # in the run's temporary folder; the in-sandbox code knows it by this name too
PYTHON_LAUNCHER = f"{RUN_DIR}/llm_sandbox_launch.py"
PYTHON_CAPTURE = f"{RUN_DIR}/llm_sandbox_capture.py"
R_PROFILE = f"{RUN_DIR}/llm_sandbox_capture.R"


@dataclass(frozen=True)
class Plotter:
    """One language's capture: ``files`` are written into the run's temporary folder, ``wrap`` turns the
    language's argv for the code file into the one that runs it with the capture, ``environment`` is added to the
    run's."""

    files: tuple[CodeFile, ...]
    wrap: Callable[[list[str]], list[str]]
    environment: Mapping[str, str] = field(default_factory=dict)


def sandbox_source(name: str) -> str:
    return resources.files("llm_sandbox.artifacts.sandbox").joinpath(name).read_text(encoding="utf-8")


@cache
def python_plotter(code_file: str) -> Plotter:
    launcher = sandbox_source("python_launch.py") + f"\n\n_llm_sandbox_launch({code_file!r})\n"
    code_path = f"{RUN_DIR}/{code_file}"

    def wrap(argv: list[str]) -> list[str]:
        # The launcher takes the code file's place: still a plain ``python -u FILE``.
        return [PYTHON_LAUNCHER if part == code_path else part for part in argv]

    files = (CodeFile(PYTHON_LAUNCHER, launcher), CodeFile(PYTHON_CAPTURE, sandbox_source("python_capture.py")))
    # The interpreter the helper keeps waiting for the next run imports pyplot ahead (most of a plot's time); the
    # launcher takes the variable out of the program's environment.
    return Plotter(files, wrap, {WARM_IMPORTS: "matplotlib.pyplot"})


@cache
def r_plotter(code_file: str) -> Plotter:
    def wrap(argv: list[str]) -> list[str]:
        return ["/usr/bin/env", f"R_PROFILE_USER={R_PROFILE}", *argv]

    return Plotter((CodeFile(R_PROFILE, sandbox_source("capture.R")),), wrap)


PLOTTERS: dict[str, Callable[[str], Plotter]] = {"python": python_plotter, "r": r_plotter}


def plotter_for(language: str, code_file: str) -> Plotter:
    """The capture of ``language`` (its code file's name), or LanguageNotSupportPlotError naming the ones with one."""
    make = PLOTTERS.get(language)
    if make is None:
        raise LanguageNotSupportPlotError(
            f"plots cannot be captured for {language}: they can for {', '.join(sorted(PLOTTERS))}; "
            "pass enable_plotting=False to run it without"
        )
    return make(code_file)
