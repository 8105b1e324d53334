"""The backends the contract suite runs on, one harness each.

A harness knows its backend's registry name; how to open a session on it the way a user would
(``harness.session(**options)``, supplying ``backend=`` and whatever else that backend needs: the fake API server
behind Kubernetes, the micromamba stand-in image); what the backend declares it guarantees (read from its registry
entry, never restated here); whether a test can hold the SDK client of the engine its sandboxes are containers of;
and how to list what a test run left behind on it.

Tests ask for what they need with ``@pytest.mark.requires("capability", ...)``; ``conftest.py`` skips them on a
harness whose entry does not declare it, with the reason below (``UNDECLARED``), and skips tests that take the
``engine_client`` fixture on a harness that has no engine SDK client.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends.base import BackendCapabilities
from llm_sandbox.backends.registry import BackendEntry, get_backend_entry
from llm_sandbox.labels import OWNER_PID_LABEL, is_orphan

TEST_LABEL = "io.llm-sandbox.test"  # on every container a test starts itself
MANAGED_LABEL = "io.llm-sandbox.managed"  # on every container the library creates
FAKE_KUBE_LABEL = "io.llm-sandbox.fake-kube"  # on every container behind a pod of the fake Kubernetes API server
ENGINES = ("docker", "podman")
PODMAN_SOCKET = "unix:///run/podman/podman.sock"


def connect(engine: str) -> Any:
    """A client of ``engine`` ("docker" or "podman"); the run fails, saying how to start it, when it is not up."""
    try:
        if engine == "docker":
            import docker

            client = docker.from_env()
        else:
            import podman

            client = podman.PodmanClient(base_url=os.environ.get("CONTAINER_HOST", PODMAN_SOCKET))
        client.ping()
    except Exception as error:  # the suite needs the engine: say how to get it
        pytest.fail(f"no {engine} engine reachable ({error}); run scripts/test.sh, which starts it", pytrace=False)
    return client


# What marks a container or volume as this test run's: the run's pid (the library's owner-pid label, and the
# value of TEST_LABEL on containers the tests start) and the ids of the fake Kubernetes servers it started.
THIS_RUN = {str(os.getpid())}


def of_this_run(labels: Mapping[str, str]) -> bool:
    """Whether a labelled resource is this run's to remove, or nobody's: another test run on the same engines
    (a developer's, at the same time) keeps its own, while an orphan whose owner process died is a leak."""
    if labels.get(OWNER_PID_LABEL) in THIS_RUN or labels.get(TEST_LABEL) in THIS_RUN:
        return True
    if labels.get(FAKE_KUBE_LABEL) in THIS_RUN:
        return True
    return MANAGED_LABEL in labels and is_orphan(dict(labels))


def list_containers(client: Any, filters: Mapping[str, str]) -> list[Any]:
    """``client.containers.list(all=True, filters=...)``, again when a listed container went away before the SDK
    looked it up (it inspects each one; another run, or the engines' auto-removal, may remove one meanwhile)."""
    return _list_again_if_one_went(lambda: client.containers.list(all=True, filters=dict(filters)))


def list_volumes(client: Any, filters: Mapping[str, str]) -> list[Any]:
    """``client.volumes.list(filters=...)``, with the same patience as ``list_containers``."""
    return _list_again_if_one_went(lambda: client.volumes.list(filters=dict(filters)))


def _list_again_if_one_went(listing: Any) -> list[Any]:
    for _attempt in range(10):
        try:
            return list(listing())
        except Exception as error:
            said = str(error).lower()
            if "no such" not in said and "not found" not in said:
                raise
            time.sleep(0.1)
    raise AssertionError("the engine's list kept changing while it was read")


def labelled(client: Any, labels: Iterable[str]) -> list[str]:
    """This run's containers and volumes (and orphans) carrying any of ``labels`` on the engine of ``client``."""
    found = []
    for label in labels:
        for container in list_containers(client, {"label": label}):
            if not of_this_run(container.labels or {}):
                continue
            state = container.attrs.get("State")  # podman's list gives a plain string here
            found.append(f"container {container.name} ({state.get('Status') if isinstance(state, dict) else state})")
        for volume in list_volumes(client, {"label": label}):
            if of_this_run(volume.attrs.get("Labels") or {}):
                found.append(f"volume {volume.name}")
    return found


class Harness(ABC):
    """One backend under test: a session factory with the backend's declaration and its leak check."""

    #: The backend's name in the registry.
    name: ClassVar[str]
    #: The engine ("docker" or "podman") whose containers the sandboxes are, when a test can reach them with that
    #: engine's SDK client; None when it cannot (a pod is not a container a test can look up).
    engine: ClassVar[str | None] = None
    #: Why a capability the entry does not declare is absent, for the skip reasons.
    UNDECLARED: ClassVar[Mapping[str, str]] = {}

    def __init__(self, sdk_client: Any = None, **session_defaults: Any) -> None:
        self.sdk_client = sdk_client
        self.session_defaults = {"backend": self.name, **session_defaults}

    def __repr__(self) -> str:
        return f"<{self.name} harness>"

    @classmethod
    def entry(cls) -> BackendEntry:
        return get_backend_entry(cls.name)

    @classmethod
    def capabilities(cls) -> BackendCapabilities:
        """What the backend's registry entry declares."""
        return cls.entry().capabilities

    @classmethod
    def has_sdk_client(cls) -> bool:
        return cls.engine is not None

    @classmethod
    @abstractmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        """The harness, with what it needs from the session's fixtures (engine clients, servers, images)."""

    @classmethod
    @abstractmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        """What the library or the tests left on this backend; ``clients`` has a client of every engine."""

    @classmethod
    def skip_reason(cls, required: Sequence[str], needs_sdk_client: bool) -> str | None:
        """Why a test that requires these capabilities (and perhaps the engine's SDK client) cannot run here."""
        missing = cls.capabilities().missing(*required)
        if missing:
            return "; ".join(
                f"the {cls.name} backend does not declare {name}"
                + (f": {cls.UNDECLARED[name]}" if name in cls.UNDECLARED else "")
                for name in missing
            )
        if needs_sdk_client and not cls.has_sdk_client():
            return (
                f"the {cls.name} backend has no engine SDK client for a test to hold, and this test needs the "
                "engine's SDK client"
            )
        return None

    def session(self, **options: Any) -> SandboxSession:
        """A new, unopened session on this backend, as a user would make it; ``options`` win over the defaults."""
        return SandboxSession(**{**self.session_defaults, **options})


class DockerHarness(Harness):
    name = "docker"
    engine = "docker"

    @classmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        return cls(request.getfixturevalue("docker_client"))

    @classmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        return labelled(clients["docker"], (MANAGED_LABEL, TEST_LABEL))


class PodmanHarness(Harness):
    name = "podman"
    engine = "podman"

    @classmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        return cls(request.getfixturevalue("podman_client"))

    @classmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        return labelled(clients["podman"], (MANAGED_LABEL, TEST_LABEL))


class KubernetesHarness(Harness):
    """Pods on the fake API server of ``llm_sandbox.testing.fake_kube`` (fixture ``fake_kube``), found through the
    KUBECONFIG it writes, as a user's program would find its cluster."""

    name = "kubernetes"
    UNDECLARED: ClassVar[Mapping[str, str]] = {
        "init": "Kubernetes runs no init: PID 1 is the pod's keep-alive command, under the code's own uid",
        "process_limit": "a pod spec has no process limit (the kubelet's podPidsLimit decides, cluster-wide)",
        "file_size_limit": "a pod spec has no file-size rlimit (ephemeral-storage limits evict the pod instead)",
        "user_switch": (
            "an exec into a pod cannot choose its user (the pod's securityContext decides), so nothing writes "
            "where the code's user may not"
        ),
        "images": "the cluster's nodes pull images: there is no image store to build in",
        "commit": "a pod cannot be saved as an image",
        "disk_limit": (
            "a pod's writes are bounded only by ephemeral-storage limits, which the kubelet enforces by evicting "
            "the pod rather than with ENOSPC; the library sets none (docs/security.md)"
        ),
    }

    @classmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        request.getfixturevalue("fake_kube")
        return cls()

    @classmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        # The server itself fails the run when a pod is left (fixture fake_kube); here: the containers behind pods.
        return labelled(clients["docker"], (FAKE_KUBE_LABEL,))


class MicromambaHarness(Harness):
    """Micromamba on Docker, in the clearly named stand-in image (tests/fixtures/micromamba-stand-in): no real
    micromamba binary can be obtained on the project's machines."""

    name = "micromamba"
    engine = "docker"

    @classmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        image = request.getfixturevalue("micromamba_stand_in_image")
        return cls(request.getfixturevalue("docker_client"), image=image)

    @classmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        return labelled(clients["docker"], (MANAGED_LABEL, TEST_LABEL))


class BubblewrapHarness(Harness):
    """bwrap process trees on this host, from the images' filesystems exported out of Docker (or Podman)."""

    name = "bubblewrap"
    UNDECLARED: ClassVar[Mapping[str, str]] = {
        "images": "it has no image store: it runs the filesystem of an image of Docker or Podman, exported once",
        "commit": "a sandbox is a process tree on an overlay, not a container an engine can save as an image",
        "attach": "its sandboxes are process trees it starts itself: there is no container of another's to attach to",
    }

    @classmethod
    def start(cls, request: pytest.FixtureRequest) -> Harness:
        return cls()

    @classmethod
    def leftovers(cls, clients: Mapping[str, Any]) -> list[str]:
        from llm_sandbox.backends import bwrap_cgroup
        from llm_sandbox.backends.bwrap_scratch import SCRATCH_ROOT, scratch_labels

        found = []
        for path in sorted(SCRATCH_ROOT.iterdir()) if SCRATCH_ROOT.is_dir() else []:
            labels = scratch_labels(path)
            if labels is None or of_this_run(labels):
                found.append(f"bubblewrap scratch folder {path}")
        mine = tuple(f"pid{pid}-" for pid in THIS_RUN)
        found += [
            f"bubblewrap cgroup {group}" for group in bwrap_cgroup.orphan_groups(set()) if group.name.startswith(mine)
        ]
        return found


# Micromamba is Docker with every command started through ``micromamba run``. The modules about how a command
# starts and what it may do (runs and commands, languages' files, hardening, the attacks, copies, installs,
# interactive kernels, test_micromamba) run on it; the modules about capabilities built above that path (pools,
# artifacts, asyncio, the disk cap, the documented options) take this mark and run on the other harnesses only,
# which keeps the suite within its time budget without losing what the wrapper changes.
ABOVE_THE_COMMAND_PATH = pytest.mark.backends("docker", "podman", "kubernetes", "bubblewrap")


HARNESSES: dict[str, type[Harness]] = {
    harness.name: harness
    for harness in (DockerHarness, PodmanHarness, KubernetesHarness, MicromambaHarness, BubblewrapHarness)
}
