"""Attaching to containers the user already runs (`container_id`), started with the engine's own SDK.

These run on Docker and Podman; attaching on Kubernetes and Micromamba has its own tests
(test_kubernetes_existing_pods.py, test_micromamba.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import ContainerError, SandboxTimeoutError, ValidationError

pytestmark = pytest.mark.backends("docker", "podman")

StartContainer = Callable[..., Any]


def _processes(container: Any) -> str:
    return str(container.exec_run(["ps", "-eo", "pid,args"])[1].decode())


def test_attach_by_id_and_by_name(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    for ref in (container.id, container.name):
        with backend.session(container_id=ref, lang="python") as session:
            assert session.run("print('attached')").stdout == "attached\n"


def test_stopped_container_is_started(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    container.stop(timeout=0)
    with backend.session(container_id=container.id, lang="python") as session:
        assert session.run("print('woke up')").stdout == "woke up\n"
    container.reload()
    assert container.status == "running"


def test_missing_container_is_a_container_error(backend: Harness) -> None:
    with pytest.raises(ContainerError, match="no-such-container-here"):
        backend.session(container_id="no-such-container-here", lang="python").open()


def test_dockerfile_with_container_id_is_refused(backend: Harness, tmp_path: Any) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    with pytest.raises(ValidationError, match="dockerfile and container_id"):
        backend.session(container_id="x", dockerfile=str(dockerfile))


def test_close_never_stops_removes_or_commits(
    backend: Harness, make_container: StartContainer, engine_client: Any
) -> None:
    container = make_container()
    images_before = {image.id for image in engine_client.images.list()}
    with backend.session(container_id=container.id, lang="python", commit_container=True) as session:
        session.run("print(1)")
    container.reload()
    assert container.status == "running"
    assert {image.id for image in engine_client.images.list()} == images_before


def test_environment_setup_is_skipped(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    before = container.exec_run(["sh", "-c", "ls -A /sandbox /tmp; pip list 2>/dev/null | wc -l"])[1]
    with backend.session(container_id=container.id, lang="python", libraries=["termcolor==2.4.0"]) as session:
        session.run("print('x')")
        assert session.run("import termcolor").exit_code != 0  # nothing was installed at open
    after = container.exec_run(["sh", "-c", "ls -A /sandbox /tmp; pip list 2>/dev/null | wc -l"])[1]
    assert after == before  # no venv, no workdir files, no code files left behind


def test_python_is_found_as_the_container_has_it(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    with backend.session(container_id=container.id, lang="python") as session:
        assert session.run("import sys; print(sys.executable)").stdout.strip() == "/opt/venv/bin/python3"
    # A venv in the workdir wins.
    container.exec_run(["python3", "-m", "venv", "--without-pip", "/sandbox/.venv"])
    with backend.session(container_id=container.id, lang="python") as session:
        assert session.run("import sys; print(sys.prefix)").stdout.strip() == "/sandbox/.venv"


def test_plain_python_is_used_when_there_is_no_python3(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    script = (
        'real=$(readlink -f /usr/bin/python3) && cp "$real" /usr/local/bin/python && '
        "rm -f /usr/bin/python3* /opt/venv/bin/python3* /opt/venv/bin/python"
    )
    assert container.exec_run(["sh", "-c", script])[0] == 0
    with backend.session(container_id=container.id, lang="python") as session:
        assert session.run("import sys; print(sys.executable)").stdout.strip() == "/usr/local/bin/python"


def test_timeout_kills_the_run_but_not_the_container(backend: Harness, make_container: StartContainer) -> None:
    container = make_container(command=["sh", "-c", "sleep 4242 & exec sleep infinity"])
    with backend.session(container_id=container.id, lang="python") as session:
        with pytest.raises(SandboxTimeoutError):
            session.run(
                "import subprocess, time\nsubprocess.Popen(['setsid', 'sleep', '777'])\ntime.sleep(60)", timeout=1
            )
        assert session.run("print('ok')").stdout == "ok\n"
    container.reload()
    assert container.status == "running"
    processes = _processes(container)
    assert "sleep 4242" in processes
    assert "sleep 777" not in processes


def test_install_and_commands_work_when_asked(backend: Harness, make_container: StartContainer) -> None:
    container = make_container()
    with backend.session(container_id=container.id, lang="python") as session:
        session.install(["termcolor==2.4.0"])
        assert session.run("import termcolor; print('termcolor ok')").stdout == "termcolor ok\n"
        assert session.execute_command("echo $((6 * 7))").stdout == "42\n"
