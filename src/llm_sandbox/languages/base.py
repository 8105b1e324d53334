"""What the session needs to know about a language, as data.

Argv templates use placeholders the session fills in: ``{file}`` (the code file, in a per-run temporary folder
inside the sandbox), ``{dir}`` (that folder), ``{workdir}`` (the session's workdir) and ``{python}`` (the
interpreter the sandbox has). ``{libraries}``, in an install template, stands for the validated library names, one
argv item each. Environment values may use ``{workdir}`` too.

A template that needs more than one step (compile, then run) is a ``/bin/sh -c SCRIPT sh ARG...`` argv: the
script is a constant of the language module and every variable part reaches it as a positional argument, never
spliced into the script text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llm_sandbox.errors import InvalidLibraryNameError, LibraryInstallationNotSupportedError

RUN_DIR = "{tmp}"  # expanded by the guest helper to the run's own temporary folder

# One path segment of a local source: plain characters only, so that a path is never shell or option syntax.
_SEGMENT = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class Language:
    """One language: how its code is stored, run, and its libraries installed."""

    name: str
    file_name: str
    run: tuple[str, ...]
    install: tuple[str, ...] | None
    library_pattern: re.Pattern[str]
    library_hint: str
    #: Recognises the compiler's (or parser's) report in stderr: a compile error is a non-zero exit, not an error.
    compile_error: re.Pattern[str]
    #: The Dockerfile of the language's default image, built ``FROM`` the common base (``ARG BASE_IMAGE``). Its
    #: text is hashed into the image's recipe label, so any edit makes the image stale.
    image_recipe: str
    environment: Mapping[str, str] = field(default_factory=dict)
    no_install_reason: str = ""
    #: Local sources the package manager installs from files: paths under the workdir whose part after the workdir
    #: matches this pattern (for example a built ``.gem``). None: only registry names.
    local_source: re.Pattern[str] | None = None
    local_hint: str = ""
    #: The user installs run as; None is the code user. System package managers need "0" (root, still without
    #: capabilities in a container the library created).
    install_user: str | None = None
    #: Runs are ``{python} -u {file}``: the helper may keep that interpreter started ahead of the next run.
    warm_interpreter: bool = False

    def run_argv(self, values: Mapping[str, str]) -> list[str]:
        return [_fill(part, values) for part in self.run]

    def code_path(self) -> str:
        return f"{RUN_DIR}/{self.file_name}"

    def environment_for(self, values: Mapping[str, str]) -> dict[str, str]:
        return {key: _fill(value, values) for key, value in self.environment.items()}

    def install_argv(self, libraries: Sequence[str], values: Mapping[str, str]) -> list[str]:
        workdir = values.get("workdir")
        for library in libraries:
            self.check_library(library, workdir)
        if self.install is None:
            raise LibraryInstallationNotSupportedError(
                f"{self.name} has no package manager the library can drive: {self.no_install_reason}"
            )
        argv: list[str] = []
        for part in self.install:
            if part == "{libraries}":
                argv.extend(libraries)
            else:
                argv.append(_fill(part, values))
        return argv

    def check_library(self, library: str, workdir: str | None = None) -> None:
        # Names reach the package manager as argv items, never through a shell; the pattern also keeps out
        # anything that manager would read as an option (a leading '-') or as a URL or path.
        if not isinstance(library, str):
            raise InvalidLibraryNameError(f"{library!r} is not a valid {self.name} library name: not a string")
        if self.is_local_source(library, workdir) or self.library_pattern.fullmatch(library):
            return
        expected = self.library_hint
        if self.local_source is not None:
            expected += f", or {self.local_hint} under the workdir ({workdir or 'the session workdir'})"
        raise InvalidLibraryNameError(f"{library!r} is not a valid {self.name} library name: expected {expected}")

    def is_local_source(self, library: str, workdir: str | None) -> bool:
        """Whether ``library`` is a plain path under ``workdir`` that this language installs from a file."""
        if self.local_source is None or not workdir:
            return False
        prefix = workdir.rstrip("/") + "/"
        if not library.startswith(prefix):
            return False
        relative = library[len(prefix) :]
        segments = relative.split("/")
        return all(_SEGMENT.fullmatch(segment) for segment in segments) and bool(self.local_source.fullmatch(relative))

    def is_compile_error(self, exit_code: int, stderr: str) -> bool:
        """Whether a run's result is the compiler's (or parser's) refusal of the code."""
        return exit_code != 0 and self.compile_error.search(stderr) is not None


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def debian_toolchain_recipe(name: str, summary: str, packages: str, version_check: str) -> str:
    """A language image's Dockerfile: the common base plus the toolchain's Debian packages, checked to run."""
    return (
        f"# llm-sandbox {name} image: {summary}.\n"
        '# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").\n'
        "# The builder passes BASE_IMAGE (the base tag under the chosen engine); the base already holds the CA setup,\n"
        "# the Python helper venv /opt/venv and the workdir /sandbox. update-ca-certificates runs again after the\n"
        "# install so that package hooks (Java's keystore) pick up the host CA.\n"
        "ARG BASE_IMAGE=llm-sandbox/base:bookworm\n"
        "FROM ${BASE_IMAGE}\n"
        "ARG DEBIAN_FRONTEND=noninteractive\n"
        "RUN apt-get update \\\n"
        f"    && apt-get install -y --no-install-recommends {packages} \\\n"
        "    && apt-get clean \\\n"
        "    && rm -rf /var/lib/apt/lists/* \\\n"
        "    && update-ca-certificates \\\n"
        f"    && {version_check}\n"
    )
