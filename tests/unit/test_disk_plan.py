"""The disk cap's plan and its container options: which places are capped, how, and the memory limit raised."""

from __future__ import annotations

from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.base import ContainerSpec, DiskPlan
from llm_sandbox.backends.runtime_options import docker_create_options, podman_create_options
from llm_sandbox.errors import ValidationError
from llm_sandbox.labels import DISK_VOLUME_LABEL, SANDBOX_LABEL
from llm_sandbox.sizes import parse_size
from llm_sandbox.writable_places import disk_plan

PLACES = ("/sandbox", "/tmp", "/var/tmp", "/run/lock", "/opt/llm-sandbox/user")


def _plan(**options: Any) -> DiskPlan | None:
    return disk_plan(SandboxSession(lang="python", **options).options.sandbox)


def _spec(plan: DiskPlan | None, runtime: dict[str, Any] | None = None) -> ContainerSpec:
    return ContainerSpec(
        image="img",
        command=["sleep", "infinity"],
        workdir="/sandbox",
        code_user="65534:65534",
        labels={SANDBOX_LABEL: "abc"},
        runtime_configs=runtime or {},
        disk=plan,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), ("512", 512), ("64m", 64 * 1024**2), ("2g", 2 * 1024**3), ("2GiB", 2 * 1024**3), ("3 k", 3072)],
)
def test_sizes_are_bytes_or_the_engines_short_form(value: Any, expected: int) -> None:
    assert parse_size("disk_limit", value) == expected


@pytest.mark.parametrize("value", [0, -1, True, "", "2x", "1.5g", None, 2.0])
def test_a_size_that_is_not_one_is_refused_with_the_forms_that_are(value: Any) -> None:
    with pytest.raises(ValidationError, match="'512m' or '2g'"):
        parse_size("disk_limit", value)


def test_the_default_plan_caps_every_place_the_code_writes_at_2_gib() -> None:
    plan = _plan()
    assert plan is not None
    assert plan.places == PLACES
    assert plan.limit == 2 * 1024**3
    assert plan.owner == (65534, 65534)
    assert plan.owned == ("/sandbox", "/opt/llm-sandbox/user")


def test_a_workdir_that_is_a_temporary_folder_is_capped_once() -> None:
    plan = _plan(workdir="/tmp")
    assert plan is not None and plan.places.count("/tmp") == 1


def test_no_plan_when_relaxed_on_kubernetes_or_where_the_caller_mounts() -> None:
    assert _plan(relax_hardening=["disk_limit"]) is None
    assert disk_plan(SandboxSession(backend="kubernetes", lang="python").options.sandbox) is None
    plan = _plan(runtime_configs={"volumes": ["/host/data:/tmp:rw"], "tmpfs": {"/var/tmp": ""}})
    assert plan is not None and plan.places == ("/sandbox", "/run/lock", "/opt/llm-sandbox/user")


def test_each_place_is_a_labelled_tmpfs_volume_and_the_memory_limit_grows_by_the_cap() -> None:
    plan = _plan(disk_limit="64m")
    options = docker_create_options(_spec(plan))
    volumes = options["volumes"]
    assert [binding["bind"] for binding in volumes.values()] == list(PLACES)
    assert all(name.startswith("llm-sandbox-disk-abc-") for name in volumes)
    assert options["mem_limit"] == options["memswap_limit"] == 1024**3 + 64 * 1024**2
    caller = docker_create_options(_spec(plan, {"mem_limit": "256m", "volumes": ["/host:/data:ro"]}))
    assert caller["mem_limit"] == 256 * 1024**2 + 64 * 1024**2
    assert caller["volumes"][0] == "/host:/data:ro"
    assert caller["volumes"][1:] == [f"llm-sandbox-disk-abc-{index}:{place}:rw" for index, place in enumerate(PLACES)]


def test_the_volumes_own_say_size_owner_and_mode_per_engine() -> None:
    from llm_sandbox.backends.disk import disk_volumes

    plan = _plan(disk_limit="64m")
    docker = {volume.target: volume for volume in disk_volumes(_spec(plan), engine="docker")}
    assert docker["/sandbox"].driver_opts == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": f"size={64 * 1024**2},uid=65534,gid=65534,mode=0755,nosuid,nodev",
    }
    assert docker["/tmp"].driver_opts["o"].endswith("uid=0,gid=0,mode=1777,nosuid,nodev")
    assert docker["/tmp"].labels == {SANDBOX_LABEL: "abc", DISK_VOLUME_LABEL: "/tmp"}
    # Podman 4.3 refuses "size" on a local volume (it reads it as an XFS quota): the same size in pages.
    podman = {volume.target: volume for volume in disk_volumes(_spec(plan), engine="podman")}
    assert podman["/sandbox"].driver_opts["o"].startswith("nr_blocks=16384,")
    assert "volumes" in podman_create_options(_spec(plan))


def test_without_a_plan_nothing_is_mounted_and_the_memory_limit_stays() -> None:
    options = docker_create_options(_spec(None))
    assert "volumes" not in options
    assert options["mem_limit"] == 1024**3
