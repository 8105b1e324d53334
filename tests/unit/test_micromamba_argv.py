"""The Micromamba backend's exact argv: every command becomes `micromamba run -n <environment> …`, never a string."""

from __future__ import annotations

import pytest

from llm_sandbox import SandboxSession, ValidationError
from llm_sandbox.backends.base import Command
from llm_sandbox.backends.micromamba import MicromambaBackend, micromamba_argv


def test_argv_is_prefixed_item_by_item() -> None:
    argv = ["python", "-c", "print('a b; c $(d)')"]
    assert micromamba_argv("myenv", argv) == ["micromamba", "run", "-n", "myenv", *argv]


def test_the_backend_wraps_commands_and_keeps_their_other_fields() -> None:
    backend = MicromambaBackend(environment="data-science_2")  # no engine contact until a container is bound
    command = Command(["/bin/sh", "-c", "echo $HOME && ls"], user="65534", workdir="/sandbox", environment={"A": "1"})
    wrapped = command.wrapped(backend.command_prefix)
    assert list(wrapped.argv) == ["micromamba", "run", "-n", "data-science_2", "/bin/sh", "-c", "echo $HOME && ls"]
    assert (wrapped.user, wrapped.workdir, dict(wrapped.environment)) == ("65534", "/sandbox", {"A": "1"})
    assert backend.wrap(["true"]) == ["micromamba", "run", "-n", "data-science_2", "true"]


def test_the_default_environment_is_base() -> None:
    assert MicromambaBackend().command_prefix == ["micromamba", "run", "-n", "base"]


@pytest.mark.parametrize("name", ["", "-n", "a b", "x;rm -rf /", "$(id)", "../etc"])
def test_environment_names_are_checked(name: str) -> None:
    with pytest.raises(ValidationError):
        MicromambaBackend(environment=name)


def test_environment_is_an_option_of_the_micromamba_backend_only() -> None:
    SandboxSession(backend="micromamba", environment="myenv")
    with pytest.raises(TypeError, match="environment"):
        SandboxSession(backend="docker", environment="myenv")
