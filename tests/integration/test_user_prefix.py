"""The code's own library prefix on the real engines: its programs on the code's PATH only, and a reset empties it."""

from __future__ import annotations

import pytest

from harness import Harness
from llm_sandbox.backends.base import Command
from llm_sandbox.languages.base import USER_PREFIX

# Created sandboxes on the OCI engines: installs go to the prefix (micromamba's go to its environment instead).
pytestmark = pytest.mark.backends("docker", "podman", "bubblewrap")


def test_a_program_installed_for_the_code_is_on_the_codes_path_and_never_on_roots(backend: Harness) -> None:
    with backend.session(lang="python") as session:
        path = session.execute_command("echo $PATH").stdout.strip().split(":")
        # Last: found, but never in place of the image's own tools.
        assert path[-1] == f"{USER_PREFIX}/python/bin"
        assert "/usr/bin" in path[:-1]
        session.install(["cowsay==6.1"])
        assert "hello" in session.execute_command("cowsay -t hello").stdout
        sandbox = session.sandbox
        assert sandbox is not None
        # Root's commands never look there (the engine's exec as root, with the image's own environment).
        roots = sandbox.backend.exec(Command(["/bin/sh", "-c", "echo $PATH"], user="0")).stdout.decode()
        assert USER_PREFIX not in roots


def test_a_reset_forgets_the_libraries_a_user_installed(backend: Harness) -> None:
    with backend.session(lang="python") as session:
        session.install(["termcolor==2.4.0"])
        assert session.run("import termcolor\nprint('imported')").stdout == "imported\n"
        assert session.sandbox is not None
        session.sandbox.reset()
        result = session.run("import termcolor")
        assert result.exit_code != 0
        assert "ModuleNotFoundError" in result.stderr
        assert session.execute_command(["ls", "-A", USER_PREFIX]).stdout == ""
