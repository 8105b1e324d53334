"""runtime_configs add to the hardened defaults on the real engines; taking one away needs relax_hardening."""

from __future__ import annotations

from typing import Any

import pytest

from harness import Harness
from llm_sandbox import SandboxSession
from llm_sandbox.errors import UnknownOptionError

pytestmark = pytest.mark.backends("docker", "podman")


def _status(session: SandboxSession, name: str) -> str:
    output = session.execute_command(f"grep '^{name}:' /proc/self/status").stdout
    return output.split(":", 1)[1].strip()


def test_added_options_keep_every_default(backend: Harness, engine_client: Any) -> None:
    with backend.session(runtime_configs={"cap_drop": ["NET_RAW"], "pids_limit": 128}) as session:
        config = engine_client.containers.get(session.container_id).attrs["HostConfig"]
        assert config["PidsLimit"] == 128
        assert _status(session, "NoNewPrivs") == "1"
        assert _status(session, "CapBnd") == "0000000000000000"
        assert session.run("print('ok')").stdout == "ok\n"


def test_a_weakening_key_alone_is_refused_before_anything_is_created(backend: Harness, engine_client: Any) -> None:
    before = {container.id for container in engine_client.containers.list(all=True)}
    with pytest.raises(UnknownOptionError, match=r"relax_hardening=\['capabilities'\]"):
        backend.session(runtime_configs={"cap_add": ["SYS_PTRACE"]}).open()
    with pytest.raises(UnknownOptionError, match=r"relax_hardening=\['pids_limit'\]"):
        backend.session(runtime_configs={"pids_limit": -1}).open()
    assert {container.id for container in engine_client.containers.list(all=True)} <= before


def test_relaxing_by_name_takes_exactly_that_default_away(backend: Harness, engine_client: Any) -> None:
    with backend.session(relax_hardening=["no_new_privileges", "pids_limit"]) as session:
        attrs = engine_client.containers.get(session.container_id).attrs
        config = attrs["HostConfig"]
        assert config["PidsLimit"] != 256  # the engine's own default now (none on Docker, 2048 on Podman)
        assert not any("no-new-privileges" in item for item in config.get("SecurityOpt") or [])
        assert _status(session, "CapEff") == "0000000000000000"  # the rest still holds
        assert _status(session, "CapBnd") == "0000000000000000"
        assert config["Memory"] == 3 * 1024**3  # the memory limit and the disk cap's files in memory, still there
        assert session.run("print('ok')").stdout == "ok\n"
