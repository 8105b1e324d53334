"""What the session needs to know about a language, as data.

Argv templates use placeholders the session fills in: ``{file}`` (the code file, in a per-run temporary folder
inside the sandbox), ``{dir}`` (that folder) and ``{python}`` (the interpreter the sandbox has). ``{libraries}``,
in an install template, stands for the validated library names, one argv item each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llm_sandbox.errors import InvalidLibraryNameError, LibraryInstallationNotSupportedError

RUN_DIR = "{tmp}"  # expanded by the guest helper to the run's own temporary folder


@dataclass(frozen=True)
class Language:
    """One language: how its code is stored, run, and its libraries installed."""

    name: str
    file_name: str
    run: tuple[str, ...]
    install: tuple[str, ...] | None
    library_pattern: re.Pattern[str]
    library_hint: str
    environment: Mapping[str, str] = field(default_factory=dict)
    no_install_reason: str = ""

    def run_argv(self, values: Mapping[str, str]) -> list[str]:
        return [_fill(part, values) for part in self.run]

    def code_path(self) -> str:
        return f"{RUN_DIR}/{self.file_name}"

    def install_argv(self, libraries: Sequence[str], values: Mapping[str, str]) -> list[str]:
        if self.install is None:
            raise LibraryInstallationNotSupportedError(
                f"{self.name} has no package manager the library can drive: {self.no_install_reason}"
            )
        for library in libraries:
            self.check_library(library)
        argv: list[str] = []
        for part in self.install:
            if part == "{libraries}":
                argv.extend(libraries)
            else:
                argv.append(_fill(part, values))
        return argv

    def check_library(self, library: str) -> None:
        # Names reach the package manager as argv items, never through a shell; the pattern also keeps out
        # anything that manager would read as an option (a leading '-') or as a URL or path.
        if not isinstance(library, str) or not self.library_pattern.fullmatch(library):
            raise InvalidLibraryNameError(
                f"{library!r} is not a valid {self.name} library name: expected {self.library_hint}"
            )


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template
