"""What the session needs to know about a language, as data.

Argv templates use placeholders the session fills in: ``{file}`` (the code file, in a per-run temporary folder
inside the sandbox), ``{dir}`` (that folder), ``{workdir}`` (the session's workdir) and ``{python}`` (the
interpreter the sandbox has). ``{libraries}``, in an install template, stands for the validated library names, one
argv item each. Environment values may use ``{workdir}`` too.

A template that needs more than one step (compile, then run) is a ``/bin/sh -c SCRIPT sh ARG...`` argv: the
script is a constant of the language module and every variable part reaches it as a positional argument, never
spliced into the script text.

Installs never run anything the code could have written while the network is on. In a sandbox the library created,
libraries go to the code's own prefix (``USER_PREFIX``, a folder of the code's user outside the workdir, on the
code's search paths only), and the package manager starts by absolute path under ``/usr/bin/env -i`` with a fixed
environment: a fresh, empty HOME (the run's own temporary folder ``{tmp}``), a PATH of root-owned system folders
only, its configuration files switched off, and from the container's configured environment only the CA, proxy and
registry settings named in ``PASSED_THROUGH``. Each manager installs into a fresh folder under that HOME, which the
install then moves into the prefix, so nothing already in the prefix (where the code writes) is read by it. Root's
installs (``install_user="0"``) get no inherited variable at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_sandbox.errors import InvalidLibraryNameError, LibraryInstallationNotSupportedError
from llm_sandbox.guest.warm import spare_recipe

RUN_DIR = "{tmp}"  # expanded by the guest helper to the run's own temporary folder

#: The code's library prefix in a sandbox the library created: owned by the code's user (the default images create
#: it), outside the workdir so that copies of the workdir hold only what the code made, and on no search path of
#: root or of the helper. One sub-folder per language (``python``, ``node``, ``ruby``, ``r``, ``go``).
USER_PREFIX = "/opt/llm-sandbox/user"
#: PATH of every command the library runs as root: root-owned system folders only.
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: PATH of installs run as the code's user: system folders only (never the prefix, the workdir or a venv the code
#: can write), so a planted ``npm`` or ``sh`` is never what runs while the network is on.
INSTALL_PATH = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The environment of root's installs: nothing inherited.
ROOT_ENVIRONMENT = {"PATH": ROOT_PATH, "HOME": "/root", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
#: Variables of the container's configured environment (the image's and the caller's ``runtime_configs``, which
#: the code cannot change) that installs run as the code's user keep: CA bundles, proxies and registry choices.
PASSED_THROUGH = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "npm_config_registry",
    "NPM_CONFIG_REGISTRY",
    "LLM_SANDBOX_R_REPOS",
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GOINSECURE",
)
# "$@": fixed NAME=VALUE assignments, then the install's argv. env -i drops everything else; the passed-through
# variables come first, so a fixed assignment always wins.
CLEAN_ENVIRONMENT = (
    "exec /usr/bin/env -i " + " ".join(f'${{{name}+"{name}=${name}"}}' for name in PASSED_THROUGH) + ' "$@"'
)

# One path segment of a local source: plain characters only, so that a path is never shell or option syntax.
_SEGMENT = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class Spare:
    """A process the sandbox's helper starts ahead of the next run of the language (after a run, while the host
    reads the reply), so that the run does not wait for the interpreter to start. ``argv`` (values as in ``run``)
    starts the interpreter and a stub that waits on descriptor ``fd`` for ``hand`` (``{file}``: the code file's path,
    ``{source}``: its content) and then runs the file as the plain ``run`` command would, looking the same to it
    (see ``llm_sandbox.guest.warm``). A language gets a spare with these few lines: a JVM that waits for a source
    path, for instance, would be ``Spare(("java", "-cp", LAUNCHER_DIR, "Launcher"))`` beside ``run=("java",
    "{file}")``."""

    argv: tuple[str, ...]
    fd: int = 3
    hand: str = "{file}\n"


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
    #: The process the helper keeps started ahead of the next run (None: every run starts its interpreter).
    spare: Spare | None = None
    #: The fixed environment of an install in a sandbox the library created (values may use ``{prefix}``,
    #: ``{workdir}`` and ``{tmp}``), on top of the clean base (PATH, HOME, LANG).
    install_environment: Mapping[str, str] = field(default_factory=dict)
    #: The install template for an attached container, run as its owner set it up (its own PATH, HOME, config):
    #: the library never reconfigures such a container. None: the same as ``install``.
    attached_install: tuple[str, ...] | None = None
    #: Folders of executables the code's installs create in the prefix (``{prefix}``): they belong on the code's
    #: PATH only, never on root's or the helper's.
    user_bin: tuple[str, ...] = ()

    def run_argv(self, values: Mapping[str, str]) -> list[str]:
        return [_fill(part, values) for part in self.run]

    @property
    def warm_interpreter(self) -> bool:
        """Whether the helper keeps a process started ahead of the language's next run."""
        return self.spare is not None

    def spare_recipe(self, values: Mapping[str, str]) -> dict[str, Any] | None:
        """The spare's recipe as the helper takes it (``llm_sandbox.guest.warm.spare_recipe``); ``values`` as
        for ``run_argv``, the code file left as the slot the helper matches."""
        if self.spare is None:
            return None
        slot = {key: value for key, value in values.items() if key != "file"}
        return spare_recipe(
            [_fill(part, slot) for part in self.spare.argv],
            [_fill(part, slot) for part in self.run],
            fd=self.spare.fd,
            hand=self.spare.hand,
        )

    def code_path(self) -> str:
        return f"{RUN_DIR}/{self.file_name}"

    def environment_for(self, values: Mapping[str, str]) -> dict[str, str]:
        return {key: _fill(value, values) for key, value in self.environment.items()}

    def install_argv(self, libraries: Sequence[str], values: Mapping[str, str], *, attached: bool = False) -> list[str]:
        """The argv that installs ``libraries``: in a clean environment (see the module's notes) in a sandbox the
        library created, as the container's owner set it up in an attached one (``attached``)."""
        workdir = values.get("workdir")
        for library in libraries:
            self.check_library(library, workdir)
        if self.install is None:
            raise LibraryInstallationNotSupportedError(
                f"{self.name} has no package manager the library can drive: {self.no_install_reason}"
            )
        values = {"prefix": USER_PREFIX, **values}
        template = self.attached_install if attached and self.attached_install is not None else self.install
        argv: list[str] = []
        for part in template:
            if part == "{libraries}":
                argv.extend(libraries)
            else:
                argv.append(_fill(part, values))
        if attached:
            return argv
        if self.install_user == "0":
            return ["/usr/bin/env", "-i", *_assignments(ROOT_ENVIRONMENT), *argv]
        environment = {
            "PATH": INSTALL_PATH,
            "HOME": RUN_DIR,
            "LANG": "C.UTF-8",
            **{key: _fill(value, values) for key, value in self.install_environment.items()},
        }
        return ["/bin/sh", "-c", CLEAN_ENVIRONMENT, "sh", *_assignments(environment), *argv]

    def user_paths(self, prefix: str = USER_PREFIX) -> list[str]:
        """The folders of executables the code's installs create, for the code's PATH."""
        return [_fill(folder, {"prefix": prefix}) for folder in self.user_bin]

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


def _assignments(environment: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in environment.items()]


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
        "# the root-owned Python venv /opt/venv, the workdir /sandbox and the code's library prefix\n"
        "# /opt/llm-sandbox/user. update-ca-certificates runs again after the install so that package hooks (Java's\n"
        "# keystore) pick up the host CA.\n"
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
