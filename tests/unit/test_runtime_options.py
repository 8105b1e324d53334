"""runtime_configs merge with the hardened defaults: added to, never silently taken away (relax_hardening names it)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.base import ContainerSpec
from llm_sandbox.backends.runtime_options import docker_create_options, podman_create_options
from llm_sandbox.errors import UnknownOptionError, ValidationError


def _options(runtime: dict[str, Any], relaxed: frozenset[str] = frozenset(), podman: bool = False) -> dict[str, Any]:
    spec = ContainerSpec(
        image="img",
        command=["sleep", "infinity"],
        workdir="/sandbox",
        code_user="65534:65534",
        labels={},
        runtime_configs=runtime,
        relaxed=relaxed,
    )
    return podman_create_options(spec) if podman else docker_create_options(spec)


def test_security_options_and_dropped_capabilities_are_added_to_the_defaults() -> None:
    options = _options({"security_opt": ["label=disable"], "cap_drop": ["NET_RAW"]})
    assert options["security_opt"] == ["no-new-privileges", "label=disable"]
    assert options["cap_drop"] == ["ALL", "NET_RAW"]
    assert _options({"security_opt": ["no-new-privileges:true"]})["security_opt"] == ["no-new-privileges"]


@pytest.mark.parametrize(
    ("runtime", "name"),
    [
        ({"cap_add": ["SYS_ADMIN"]}, "capabilities"),
        ({"privileged": True}, "capabilities"),
        ({"security_opt": ["no-new-privileges=false"]}, "no_new_privileges"),
        ({"security_opt": ["no-new-privileges:false"]}, "no_new_privileges"),
        ({"security_opt": ["seccomp=unconfined"]}, "seccomp"),
        ({"init": False}, "init"),
        ({"pids_limit": -1}, "pids_limit"),
        ({"pids_limit": 0}, "pids_limit"),
        ({"ulimits": [{"Name": "fsize", "Soft": -1, "Hard": -1}]}, "file_size_limit"),
    ],
)
def test_weakening_keys_need_the_named_opt_out(runtime: dict[str, Any], name: str) -> None:
    with pytest.raises(UnknownOptionError, match=rf"relax_hardening=\['{name}'\]"):
        _options(runtime)
    _options(runtime, frozenset({name}))  # said on purpose: accepted


def test_relaxed_defaults_are_removed_and_the_rest_stay() -> None:
    options = _options({"cap_add": ["SYS_PTRACE"]}, frozenset({"capabilities", "pids_limit", "init"}))
    assert options["cap_drop"] == []
    assert "SYS_PTRACE" in options["cap_add"]
    assert "pids_limit" not in options
    assert options["init"] is False
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["ulimits"][0]["Name"] == "fsize"
    assert "ulimits" not in _options({}, frozenset({"file_size_limit"}))


def test_raising_a_limit_needs_no_opt_out() -> None:
    options = _options({"pids_limit": 1024, "ulimits": [{"Name": "fsize", "Soft": 2**31, "Hard": 2**31}]})
    assert options["pids_limit"] == 1024
    assert options["ulimits"] == [{"Name": "fsize", "Soft": 2**31, "Hard": 2**31}]


def test_podman_says_no_new_privileges_its_own_way() -> None:
    assert _options({}, podman=True)["no_new_privileges"] is True
    assert _options({}, frozenset({"no_new_privileges"}), podman=True)["no_new_privileges"] is False


def test_relax_hardening_names_are_checked() -> None:
    with pytest.raises(ValidationError, match="did you mean 'seccomp'"):
        SandboxSession(relax_hardening=["secomp"])
    with pytest.raises(ValidationError, match="list of names"):
        SandboxSession(relax_hardening="seccomp")
    assert SandboxSession(relax_hardening=["init"]).options.sandbox.relaxed == {"init"}
