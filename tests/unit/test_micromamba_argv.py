"""Micromamba's exact argv: every command becomes `micromamba run -n <environment> …`, never a string.

Micromamba is a command wrapper the registry composes with Docker or Podman when a sandbox is bound: these tests
check the prefix it gives and that every Command keeps its other fields when wrapped.
"""

from __future__ import annotations

import pytest

from llm_sandbox import SandboxSession, ValidationError
from llm_sandbox.backends.base import Command
from llm_sandbox.backends.micromamba import command_prefix, micromamba_argv
from llm_sandbox.backends.registry import get_backend_entry


def test_argv_is_prefixed_item_by_item() -> None:
    argv = ["python", "-c", "print('a b; c $(d)')"]
    assert micromamba_argv("myenv", argv) == ["micromamba", "run", "-n", "myenv", *argv]


def test_wrapped_commands_keep_their_other_fields() -> None:
    command = Command(["/bin/sh", "-c", "echo $HOME && ls"], user="65534", workdir="/sandbox", environment={"A": "1"})
    wrapped = command.wrapped(command_prefix("data-science_2"))
    assert list(wrapped.argv) == ["micromamba", "run", "-n", "data-science_2", "/bin/sh", "-c", "echo $HOME && ls"]
    assert (wrapped.user, wrapped.workdir, dict(wrapped.environment)) == ("65534", "/sandbox", {"A": "1"})


def test_the_registry_composes_the_wrapper_with_the_engine() -> None:
    # Building contacts no engine: the backend stays unbound until a container is created or attached.
    backend, prefix = get_backend_entry("micromamba").build(None, {"environment": "myenv"})
    assert prefix == ["micromamba", "run", "-n", "myenv"]
    assert type(backend).__name__ == "DockerBackend"
    assert get_backend_entry("docker").build(None, {})[1] == []


def test_the_default_environment_is_base() -> None:
    assert command_prefix() == ["micromamba", "run", "-n", "base"]


@pytest.mark.parametrize("name", ["", "-n", "a b", "x;rm -rf /", "$(id)", "../etc"])
def test_environment_names_are_checked(name: str) -> None:
    with pytest.raises(ValidationError):
        command_prefix(name)


def test_environment_is_an_option_of_the_micromamba_backend_only() -> None:
    SandboxSession(backend="micromamba", environment="myenv")
    with pytest.raises(TypeError, match="environment"):
        SandboxSession(backend="docker", environment="myenv")
