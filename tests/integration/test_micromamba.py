"""What is particular to the Micromamba backend (its environments, the wrapper on attached containers, images built
on top), on each engine it wraps: here ``backend`` is the Docker or Podman harness underneath. The contract suite
also runs on Micromamba itself (harness "micromamba" in tests/harness.py, on Docker).

No micromamba binary can be obtained on the project's machines, so these tests run against a clearly named
stand-in (tests/fixtures/micromamba-stand-in) baked into a test image. The same tests run against a real
micromamba whenever one is on the host's PATH (it is copied into the image); here they are skipped saying so.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import ContainerError, SandboxSession

pytestmark = pytest.mark.backends("docker", "podman")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "micromamba-stand-in"
NO_REAL_BINARY = (
    "no real micromamba on this machine's PATH (no conda channel or registry is reachable to get one): "
    "put a micromamba binary on PATH to run these tests against it"
)


def _client(backend: Harness) -> Any:
    """The client a user passes to run micromamba on Podman (Docker is the default underneath)."""
    return backend.sdk_client if backend.name == "podman" else None


@pytest.fixture(scope="module", params=["stand-in", "real"])
def flavour(request: pytest.FixtureRequest) -> str:
    if request.param == "real" and shutil.which("micromamba") is None:
        pytest.skip(NO_REAL_BINARY)
    return str(request.param)


@pytest.fixture(scope="module")
def mamba_image(
    flavour: str, backend: Harness, engine_client: Any, python_image: str, tmp_path_factory: Any
) -> Iterator[str]:
    """A test image whose micromamba is the stand-in or the real binary, built for the engine under test."""
    tag = f"llm-sandbox-test/micromamba-{flavour}:{uuid.uuid4().hex[:8]}"
    context = tmp_path_factory.mktemp("mamba")
    for item in FIXTURE.iterdir():
        shutil.copy(item, context / item.name)
    dockerfile = "Dockerfile"
    if flavour == "real":
        real = shutil.which("micromamba")
        assert real is not None
        shutil.copy(real, context / "micromamba-real")
        dockerfile = "Dockerfile.real"
    engine_client.images.build(
        path=str(context), dockerfile=dockerfile, tag=tag, buildargs={"BASE_IMAGE": python_image}
    )
    yield tag
    engine_client.images.remove(tag, force=True)


def _session(backend: Harness, image: str, **options: Any) -> SandboxSession:
    return SandboxSession(backend="micromamba", client=_client(backend), image=image, lang="python", **options)


def test_code_commands_and_installs_run_in_the_environment(backend: Harness, mamba_image: str) -> None:
    with _session(backend, mamba_image, environment="myenv") as session:
        assert session.execute_command("echo $CONDA_DEFAULT_ENV").stdout == "myenv\n"
        assert session.run("import os; print(os.environ['CONDA_PREFIX'])").stdout == "/opt/conda/envs/myenv\n"
        session.install(["six"])
        assert session.run("import six, sys; print(sys.prefix.startswith('/opt/conda/envs/myenv'))").stdout == "True\n"


def test_exit_codes_and_streaming_behave_as_on_docker(backend: Harness, mamba_image: str) -> None:
    chunks: list[str] = []
    with _session(backend, mamba_image) as session:
        result = session.run(
            "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)", on_stdout=chunks.append
        )
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert "".join(chunks) == "out\n"
        assert session.execute_command(["sh", "-c", "exit 7"]).exit_code == 7
        assert session.execute_command("echo $CONDA_DEFAULT_ENV").stdout == "base\n"


def test_unknown_environment_is_a_clear_error(backend: Harness, mamba_image: str) -> None:
    with pytest.raises(ContainerError, match="nope"):
        _session(backend, mamba_image, environment="nope").open()


def test_dockerfile_builds_on_top(backend: Harness, mamba_image: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {mamba_image}\nRUN echo built > /etc/marker\n")
    with SandboxSession(backend="micromamba", client=_client(backend), dockerfile=str(dockerfile)) as session:
        assert session.execute_command("cat /etc/marker").stdout == "built\n"


def test_attached_container_runs_in_the_environment(backend: Harness, mamba_image: str, make_container: Any) -> None:
    container = make_container(mamba_image)
    with SandboxSession(
        backend="micromamba", client=_client(backend), container_id=container.id, environment="myenv", lang="python"
    ) as session:
        assert session.run("import os; print(os.environ['CONDA_DEFAULT_ENV'])").stdout == "myenv\n"
    container.reload()
    assert container.status == "running"


def test_the_default_image_without_micromamba_is_a_clear_error(backend: Harness) -> None:
    with pytest.raises(ContainerError, match="micromamba"):
        SandboxSession(backend="micromamba", client=_client(backend), lang="python").open()
