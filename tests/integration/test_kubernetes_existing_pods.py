"""Existing pods on Kubernetes (SPEC §3), against the fake API server and the unmodified ``kubernetes`` client.

Running pods are attached, Pending ones waited for (bounded), ended or missing ones refused; a container may be
named for multi-container pods; closing never deletes the pod. The seed's Kubernetes example runs as written.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import ContainerError, SandboxSession, SandboxTimeoutError
from llm_sandbox.images import default_image
from llm_sandbox.testing.fake_kube_pods import PENDING_ANNOTATION

SEED = Path(__file__).resolve().parents[2] / "docs" / "existing-container-support.md"
MakePod = Callable[..., str]


@pytest.fixture
def make_pod(kube_api: Any) -> Iterator[MakePod]:
    """Create pods the way a user would (with the client, not through the library); deleted at teardown."""
    made: list[tuple[str, str]] = []

    def create(
        name: str | None = None,
        *,
        namespace: str = "default",
        command: list[str] | None = None,
        containers: list[dict[str, Any]] | None = None,
        pending_seconds: float = 0,
        wait: bool = True,
    ) -> str:
        name = name or f"user-pod-{uuid.uuid4().hex[:8]}"
        body = {
            "metadata": {"name": name, "annotations": {PENDING_ANNOTATION: str(pending_seconds)}},
            "spec": {
                "restartPolicy": "Never",
                "containers": containers
                or [{"name": "main", "image": default_image("python"), "command": command or ["sleep", "infinity"]}],
            },
        }
        kube_api.create_namespaced_pod(namespace, body)
        made.append((namespace, name))
        deadline = time.monotonic() + 30
        while wait and kube_api.read_namespaced_pod(name, namespace).status.phase == "Pending":
            assert time.monotonic() < deadline, f"pod {name} did not start"
            time.sleep(0.05)
        return name

    yield create
    for namespace, name in made:
        try:
            kube_api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except Exception:
            pass


def _pod_exists(kube_api: Any, name: str) -> bool:
    return any(pod.metadata.name == name for pod in kube_api.list_namespaced_pod("default").items)


def kubernetes_example() -> str:
    """The python block under the seed document's "Kubernetes Backend" heading, exactly as printed."""
    text = SEED.read_text()
    section = text[text.index("### Kubernetes Backend") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_seed_kubernetes_example_runs_as_written(
    make_pod: MakePod, kube_api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = kubernetes_example()
    assert "container_id='my-pod-name'" in code and "client=" not in code  # the default client: the kubeconfig
    make_pod("my-pod-name")
    namespace: dict[str, Any] = {"__name__": "__seed_example__"}
    exec(compile(code + "\nprint(result.stdout, end='')\n", "<Kubernetes Backend>", "exec"), namespace)
    assert capsys.readouterr().out == "Hello from existing pod!\n"
    assert _pod_exists(kube_api, "my-pod-name")  # closing only disconnected


def test_a_pending_pod_is_waited_for_then_attached(make_pod: MakePod) -> None:
    name = make_pod(pending_seconds=2, wait=False)
    started = time.monotonic()
    with SandboxSession(backend="kubernetes", container_id=name, lang="python") as session:
        assert time.monotonic() - started > 1
        assert session.run("print('it runs now')").stdout == "it runs now\n"


def test_a_pod_that_stays_pending_is_a_container_error_in_bounded_time(make_pod: MakePod) -> None:
    name = make_pod(pending_seconds=60, wait=False)
    started = time.monotonic()
    session = SandboxSession(
        backend="kubernetes", container_id=name, lang="python", runtime_configs={"pod_ready_timeout": 1}
    )
    with pytest.raises(ContainerError, match=r"Pending.*pod_ready_timeout"):
        session.open()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("exit_code", "phase"), [(0, "Succeeded"), (3, "Failed")])
def test_ended_pods_are_refused(make_pod: MakePod, kube_api: Any, exit_code: int, phase: str) -> None:
    name = make_pod(command=["sh", "-c", f"exit {exit_code}"])
    deadline = time.monotonic() + 20
    while kube_api.read_namespaced_pod(name, "default").status.phase != phase:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ContainerError, match=phase):
        SandboxSession(backend="kubernetes", container_id=name, lang="python").open()


def test_a_missing_pod_is_a_container_error_naming_the_namespace() -> None:
    with pytest.raises(ContainerError, match=r"no-such-pod.*'default'"):
        SandboxSession(backend="kubernetes", container_id="no-such-pod", lang="python").open()


def test_a_container_can_be_named_in_a_multi_container_pod(make_pod: MakePod) -> None:
    image = default_image("python")
    name = make_pod(
        containers=[
            {
                "name": "app",
                "image": image,
                "command": ["sleep", "infinity"],
                "env": [{"name": "ROLE", "value": "app"}],
            },
            {
                "name": "side",
                "image": image,
                "command": ["sleep", "infinity"],
                "env": [{"name": "ROLE", "value": "side"}],
            },
        ]
    )
    role = "import os; print(os.environ['ROLE'])"
    with SandboxSession(backend="kubernetes", container_id=name, lang="python") as session:
        assert session.run(role).stdout == "app\n"  # the first container unless one is named
    with SandboxSession(backend="kubernetes", container_id=f"{name}/side", lang="python") as session:
        assert session.run(role).stdout == "side\n"
    with pytest.raises(ContainerError, match=r"no container 'nope'.*app, side"):
        SandboxSession(backend="kubernetes", container_id=f"{name}/nope", lang="python").open()


def test_a_timeout_kills_the_run_not_the_pod_and_close_never_deletes(make_pod: MakePod, kube_api: Any) -> None:
    name = make_pod(command=["sh", "-c", "sleep 4242 & exec sleep infinity"])
    with SandboxSession(backend="kubernetes", container_id=name, lang="python") as session:
        with pytest.raises(SandboxTimeoutError):
            session.run(
                "import subprocess, time\nsubprocess.Popen(['setsid', 'sleep', '777'])\ntime.sleep(60)", timeout=1
            )
        processes = session.execute_command(["ps", "-eo", "args"]).stdout
        assert "sleep 4242" in processes
        assert "sleep 777" not in processes
        assert session.run("print('still here')").stdout == "still here\n"
    assert kube_api.read_namespaced_pod(name, "default").status.phase == "Running"


def test_environment_setup_is_skipped_and_nothing_is_left_in_the_pod(make_pod: MakePod) -> None:
    name = make_pod()
    listing = ["sh", "-c", "ls -A /sandbox /tmp | grep -v '^llm-sandbox-run-'"]  # minus the listing's own run folder
    with SandboxSession(backend="kubernetes", container_id=name, lang="python", libraries=["six"]) as session:
        before = session.execute_command(listing).stdout
        session.run("print('x')")
        assert session.execute_command(listing).stdout == before
