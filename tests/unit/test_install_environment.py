"""How installs start (no engine): absolute programs, a fixed environment, the code's prefix on the code's search
paths only. The clean-environment wrapper is run for real with the host's /bin/sh."""

from __future__ import annotations

import os
import subprocess

import pytest

from llm_sandbox.languages.base import (
    CLEAN_ENVIRONMENT,
    INSTALL_PATH,
    PASSED_THROUGH,
    ROOT_PATH,
    USER_PREFIX,
)
from llm_sandbox.languages.registry import LANGUAGES

WORKDIR = "/sandbox"
VALUES = {"python": "/opt/venv/bin/python3", "workdir": WORKDIR}
LIBRARY = {
    "python": "six",
    "javascript": "dayjs",
    "cpp": "libfmt-dev",
    "go": "golang.org/x/text",
    "ruby": "rake",
    "r": "jsonlite",
}
INSTALLING = sorted(LIBRARY)


def _assignments(argv: list[str], start: int) -> tuple[dict[str, str], int]:
    """The NAME=VALUE items from ``start`` on, and the index of the first item that is not one."""
    environment: dict[str, str] = {}
    index = start
    while index < len(argv) and "=" in argv[index] and not argv[index].startswith("/"):
        name, _, value = argv[index].partition("=")
        environment[name] = value
        index += 1
    return environment, index


def test_root_installs_start_by_absolute_path_with_nothing_inherited() -> None:
    argv = LANGUAGES["cpp"].install_argv(["libfmt-dev"], VALUES)
    assert argv[:2] == ["/usr/bin/env", "-i"]
    environment, program = _assignments(argv, 2)
    assert environment["PATH"] == ROOT_PATH == "/usr/sbin:/usr/bin:/sbin:/bin"
    assert set(environment) == {"PATH", "HOME", "LC_ALL", "DEBIAN_FRONTEND"}
    assert argv[program] == "/usr/bin/timeout"
    assert "/bin/sh" in argv[program:]
    assert argv[-1] == "libfmt-dev"


@pytest.mark.parametrize("name", [name for name in INSTALLING if name != "cpp"])
def test_code_installs_run_in_a_clean_environment_with_a_fresh_home(name: str) -> None:
    argv = LANGUAGES[name].install_argv([LIBRARY[name]], VALUES)
    assert argv[:4] == ["/bin/sh", "-c", CLEAN_ENVIRONMENT, "sh"]
    environment, program = _assignments(argv, 4)
    assert environment["HOME"] == "{tmp}"  # the run's own fresh folder, removed after it
    assert environment["PATH"] == INSTALL_PATH
    for folder in environment["PATH"].split(":"):
        assert not folder.startswith((USER_PREFIX, WORKDIR, "/opt/venv", "/tmp"))
    # The program: by absolute path, or (Rscript) found on that fixed PATH.
    assert argv[program].startswith("/") or argv[program] == "Rscript"
    assert argv[-1] == LIBRARY[name]


def test_pip_is_isolated_reads_no_configuration_and_targets_the_prefix() -> None:
    argv = LANGUAGES["python"].install_argv(["six"], VALUES)
    environment, program = _assignments(argv, 4)
    assert environment["PIP_CONFIG_FILE"] == "/dev/null"
    assert argv[program : program + 4] == ["/opt/venv/bin/python3", "-I", "-m", "pip"]
    assert argv[argv.index("--target") + 1] == f"{USER_PREFIX}/python"


def test_attached_containers_install_as_their_owner_set_them_up() -> None:
    assert LANGUAGES["python"].install_argv(["six"], VALUES, attached=True)[:4] == [
        "/opt/venv/bin/python3",
        "-m",
        "pip",
        "install",
    ]
    assert LANGUAGES["javascript"].install_argv(["dayjs"], VALUES, attached=True)[:2] == ["npm", "install"]


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_the_prefix_is_on_the_codes_search_paths_never_on_path(name: str) -> None:
    environment = LANGUAGES[name].environment_for({"workdir": WORKDIR})
    assert "PATH" not in environment  # root's commands and the helper never see the prefix
    for folder in LANGUAGES[name].user_paths():
        assert folder.startswith(USER_PREFIX + "/")


def test_search_paths_point_into_the_prefix() -> None:
    def env(name: str) -> dict[str, str]:
        return LANGUAGES[name].environment_for({"workdir": WORKDIR})

    assert env("python")["PYTHONPATH"] == f"{USER_PREFIX}/python"
    assert env("javascript")["NODE_PATH"].split(":")[0] == f"{USER_PREFIX}/node/node_modules"
    assert env("ruby")["GEM_PATH"] == f"{USER_PREFIX}/ruby:"  # the trailing ':' keeps Ruby's default gem path
    assert env("r")["R_LIBS_USER"] == f"{USER_PREFIX}/r"
    assert env("go")["GOPATH"] == f"{USER_PREFIX}/go"


def test_clean_environment_keeps_only_configured_settings_and_fixed_values_win() -> None:
    inherited = {
        "PATH": "/tmp/planted:/usr/bin:/bin",
        "PYTHONPATH": "/tmp/planted",
        "NODE_OPTIONS": "--require /tmp/planted.js",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "HTTPS_PROXY": "http://proxy.invalid:3128",
        "PIP_INDEX_URL": "https://index.invalid/simple",
        "LLM_SANDBOX_R_REPOS": "https://cran.invalid",
    }
    result = subprocess.run(
        ["/bin/sh", "-c", CLEAN_ENVIRONMENT, "sh", "PATH=/usr/bin:/bin", "PIP_INDEX_URL=fixed", "/usr/bin/env"],
        env=inherited,
        capture_output=True,
        text=True,
        check=True,
    )
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "HTTPS_PROXY": "http://proxy.invalid:3128",
        "PIP_INDEX_URL": "fixed",
        "LLM_SANDBOX_R_REPOS": "https://cran.invalid",
    }


def test_clean_environment_passes_values_verbatim() -> None:
    value = "a b  $(id) `id` ; * '\""
    result = subprocess.run(
        ["/bin/sh", "-c", CLEAN_ENVIRONMENT, "sh", "/usr/bin/env"],
        env={"HTTPS_PROXY": value, "PATH": os.defpath},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"HTTPS_PROXY={value}\n"
    assert set(PASSED_THROUGH) >= {"SSL_CERT_FILE", "HTTPS_PROXY", "PIP_INDEX_URL", "GOPROXY"}
