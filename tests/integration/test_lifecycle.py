"""Lifecycle on the real engines (Docker and Podman): failed opens clean up, orphans are swept, images built or
committed are handled. (Kubernetes has its own: test_kubernetes.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import (
    ContainerError,
    ImagePullError,
    SandboxDiedError,
    SandboxTimeoutError,
)
from llm_sandbox.cleanup import sweep
from llm_sandbox.labels import MANAGED_LABEL, OWNER_PID_LABEL, sandbox_labels

pytestmark = pytest.mark.backends("docker", "podman", "bubblewrap")


def _managed(client: Any, label: str = MANAGED_LABEL) -> set[str]:
    # Listing inspects each container; one the engine removes meanwhile makes it fail: list again.
    for _attempt in range(5):
        try:
            return {container.id for container in client.containers.list(all=True, filters={"label": label})}
        except Exception:  # a container vanished while listing
            time.sleep(0.1)
    return {container.id for container in client.containers.list(all=True, filters={"label": label})}


@pytest.mark.requires("images")
def test_failed_open_removes_the_container_it_created(
    backend: Harness, engine_client: Any, python_image: str, tmp_path: Path
) -> None:
    # An image without any Python: the container starts, but the helper cannot, so open() fails half way.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {python_image}\nRUN rm -f /usr/bin/python3* /opt/venv/bin/python* /usr/local/bin/python*\n"
    )
    session = backend.session(lang="python", dockerfile=str(dockerfile))
    with pytest.raises(ContainerError, match="python3"):
        session.open()
    assert not _managed(engine_client, f"io.llm-sandbox.session={session.session_id}")
    assert not engine_client.images.list(filters={"reference": "llm-sandbox-build"})


@pytest.mark.requires("images")
def test_a_helper_that_cannot_start_is_reported_at_once_not_after_the_send_timeout(
    backend: Harness, python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine sometimes keeps the exec's input open after the process died (Docker, about one open in eight):
    # writing the helper's start request then blocked until the send timeout (300 s). With the timeout shortened,
    # such a write would end in a timeout instead of the helper's own error; eight opens make one likely.
    from llm_sandbox.backends import docker_stream

    monkeypatch.setattr(docker_stream, "SEND_TIMEOUT_S", 20.0)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        f"FROM {python_image}\nRUN rm -f /usr/bin/python3* /opt/venv/bin/python* /usr/local/bin/python*\n"
    )
    for _attempt in range(8):
        with pytest.raises(ContainerError) as failed:
            backend.session(lang="python", dockerfile=str(dockerfile)).open()
        assert "needs /bin/sh and /usr/bin/python3" in str(failed.value)
        assert not [error for error in _chain(failed.value) if isinstance(error, TimeoutError)]


def _chain(error: BaseException | None) -> list[BaseException]:
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


def test_missing_image_is_a_clear_error_and_leaves_nothing(backend: Harness, engine_client: Any) -> None:
    session = backend.session(lang="python", image="llm-sandbox/no-such-image:1")
    with pytest.raises(ImagePullError, match="llm-sandbox/no-such-image"):
        session.open()
    assert not _managed(engine_client, f"io.llm-sandbox.session={session.session_id}")


def test_close_is_idempotent_and_removes_the_container(backend: Harness, engine_client: Any) -> None:
    session = backend.session(lang="python").open()
    container_id = session.container_id
    session.close()
    session.close()
    assert container_id not in _managed(engine_client)


@pytest.mark.requires("images")
def test_dockerfile_image_is_removed_unless_kept(
    backend: Harness, engine_client: Any, python_image: str, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {python_image}\nRUN echo built > /etc/built-marker\n")
    with backend.session(lang="python", dockerfile=str(dockerfile)) as session:
        assert session.execute_command("cat /etc/built-marker").stdout == "built\n"
    assert not engine_client.images.list(filters={"reference": "llm-sandbox-build"})
    with backend.session(lang="python", dockerfile=str(dockerfile), keep_template=True) as session:
        session.run("print(1)")
    kept = engine_client.images.list(filters={"reference": "llm-sandbox-build"})
    assert kept
    for image in kept:
        engine_client.images.remove(image.id, force=True)


@pytest.mark.requires("commit")
def test_commit_container_writes_a_new_tag_and_never_the_source(
    backend: Harness, engine_client: Any, python_image: str
) -> None:
    source_id = engine_client.images.get(python_image).id
    with backend.session(lang="python", commit_container=True) as session:
        session.execute_command("echo state > /sandbox/state.txt")
    assert session.committed_image is not None
    assert session.committed_image != python_image
    try:
        assert engine_client.images.get(python_image).id == source_id
        with backend.session(lang="python", image=session.committed_image) as restored:
            assert restored.execute_command("cat /sandbox/state.txt").stdout == "state\n"
    finally:
        engine_client.images.remove(session.committed_image, force=True)


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_sweep_removes_an_orphan_and_keeps_what_a_live_process_owns(
    backend: Harness, engine_client: Any, python_image: str
) -> None:
    # What a crash could leave where the lease cannot act (for example an engine that lost the exec's end): a
    # container with the library's labels whose owner process is gone.
    orphan_labels = {**sandbox_labels("orphan-test"), OWNER_PID_LABEL: str(_dead_pid())}
    orphan = engine_client.containers.run(python_image, ["sleep", "300"], detach=True, labels=orphan_labels)
    with backend.session(lang="python") as live:
        removed = sweep(engine_client)
        assert orphan.id in removed
        assert live.container_id not in removed
        assert orphan.id not in _managed(engine_client)
        assert live.container_id in _managed(engine_client)
        assert live.run("print('alive')").stdout == "alive\n"


def test_session_timeout_ends_the_container_even_while_its_host_lives_on(backend: Harness, engine_client: Any) -> None:
    # The keep-alive command ends the container when session_timeout passes, whatever the host process does (the
    # helper's lease covers a host that died; this covers one that lives on and never calls again).
    session = backend.session(lang="python", session_timeout=2).open()
    try:
        container_id = session.container_id
        assert container_id in _managed(engine_client)
        deadline = time.monotonic() + 20
        while container_id in _managed(engine_client) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert container_id not in _managed(engine_client)
    finally:
        session.close()  # nothing left to remove: close still succeeds


def test_session_timeout_closes_the_session(backend: Harness) -> None:
    with backend.session(lang="python", session_timeout=1) as session:
        time.sleep(1.5)
        with pytest.raises(SandboxTimeoutError, match="session_timeout"):
            session.run("print(1)")
        assert not session.is_open


def test_a_dead_sandbox_is_reported_then_replaced(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python") as session:
        first = session.container_id
        engine_client.containers.get(first).kill()
        with pytest.raises(SandboxDiedError):
            session.run("print(1)")
        assert session.run("print('fresh')").stdout == "fresh\n"
        assert session.container_id != first
