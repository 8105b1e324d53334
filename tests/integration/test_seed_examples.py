"""Every example of docs/existing-container-support.md runs as written (Kubernetes: see test_kubernetes*.py).

The document's placeholders are made real: containers named exactly as the examples name them, and the registry
image of the "Complete Example" tagged locally from the project's Python image (no registry is reachable here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.images import default_image

DOC = Path(__file__).resolve().parents[2] / "docs" / "existing-container-support.md"
REGISTRY_IMAGE = "ghcr.io/vndee/sandbox-python-311-bullseye"
PYTHON_IMAGE = default_image("python")
EXAMPLE_SECTIONS = (
    "Basic Usage",
    "Docker Backend",
    "Podman Backend",
    "Micromamba Backend",
    "Error Handling",
    "Complete Example",
    "Migration",
)
MAMBA_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "micromamba-stand-in"
MAMBA_IMAGE = "llm-sandbox-test/micromamba-seed:1"


def python_blocks() -> list[tuple[str, str]]:
    """(heading, code) for every python block, under the nearest heading of level 2 or 3."""
    blocks: list[tuple[str, str]] = []
    heading = ""
    for match in re.finditer(r"^(#{2,3}) ([^\n]+)$|^```python\n(.*?)^```", DOC.read_text(), re.M | re.S):
        if match.group(2):
            heading = match.group(2).strip()
        else:
            blocks.append((heading, match.group(3)))
    return blocks


def runnable_examples() -> list[tuple[str, str]]:
    """Every example but the Kubernetes one (tests/integration/test_kubernetes*.py runs that against its server)."""
    examples = [(heading, code) for heading, code in python_blocks() if heading.startswith(EXAMPLE_SECTIONS)]
    # Eight blocks: basic, docker, podman, micromamba, error handling, complete example, migration before/after.
    assert len(examples) == 8, [heading for heading, _ in examples]
    return examples


@pytest.fixture(scope="module")
def seed_world(docker_client: Any, podman_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The containers and images the examples name, and a working folder with their local file."""
    docker_client.images.get(PYTHON_IMAGE).tag(REGISTRY_IMAGE)
    docker_client.images.get(PYTHON_IMAGE).tag("my-image")
    docker_client.images.build(
        path=str(MAMBA_FIXTURE), tag=MAMBA_IMAGE, buildargs={"BASE_IMAGE": PYTHON_IMAGE}, rm=True, forcerm=True
    )
    labels = {"io.llm-sandbox.test": "1"}
    started = [
        docker_client.containers.run(image, ["sleep", "infinity"], name=name, detach=True, labels=labels)
        for name, image in (
            ("abc123def456", PYTHON_IMAGE),
            ("your-container-id", PYTHON_IMAGE),
            ("micromamba-container-id", MAMBA_IMAGE),
            ("my-container", PYTHON_IMAGE),
        )
    ]
    started.append(
        podman_client.containers.run(
            PYTHON_IMAGE, ["sleep", "infinity"], name="podman-container-id", detach=True, labels=labels
        )
    )
    numpy = started[3].exec_run(["pip", "install", "--no-input", "numpy"])
    assert numpy.exit_code == 0, numpy.output[-2000:]
    folder = tmp_path_factory.mktemp("seed")
    (folder / "local_file.py").write_text("print('local file')\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        # PodmanClient() looks for the service at $XDG_RUNTIME_DIR/podman/podman.sock: root's service is in /run.
        patch.setenv("XDG_RUNTIME_DIR", "/run")
        try:
            yield
        finally:
            for container in started:
                container.kill()
                container.remove(force=True)
            for tag in (REGISTRY_IMAGE, "my-image", MAMBA_IMAGE):
                docker_client.images.remove(tag)


# The "Complete Example" builds its code with an f-string that also interpolates {np.__version__} and {data} on the
# host, where neither name exists: as printed it raises NameError before any sandbox code runs, with any library.
# The test shows exactly that, then runs the example with only those two braces doubled.
HOST_SIDE_BUG = ("{np.__version__}", "{data}")


def corrected(code: str) -> str:
    for placeholder in HOST_SIDE_BUG:
        code = code.replace(placeholder, "{" + placeholder + "}")
    return code


def run_example(heading: str, code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__seed_example__"}
    if heading.startswith("Migration"):
        # These two are fragments of the document's flow: they rely on its earlier import, so give them that.
        exec("from llm_sandbox import SandboxSession", namespace)
    exec(compile(code, f"<{heading}>", "exec"), namespace)
    return namespace


# What each example's last `result` holds (the examples that print are checked on what they print).
RESULT_STDOUT = {
    "Podman Backend": "Hello from existing Podman container!\n",
    "Micromamba Backend": "Hello from existing Micromamba container!\n",
    "Migration": "ready\n",
}


def _ours(client: Any) -> set[str]:
    """Containers the library created for this process (another process's sandboxes are not our business)."""
    mine = {"label": f"io.llm-sandbox.owner-pid={os.getpid()}"}
    return {container.id for container in client.containers.list(all=True, filters=mine)}


@pytest.mark.parametrize(
    ("heading", "code"), runnable_examples(), ids=[f"{i}-{h}" for i, (h, _) in enumerate(runnable_examples())]
)
def test_seed_example_runs_as_written(
    heading: str,
    code: str,
    seed_world: None,
    capsys: pytest.CaptureFixture[str],
    docker_client: Any,
) -> None:
    before = _ours(docker_client)
    if heading.startswith("Complete Example"):
        host_side = re.search(r'f"""(.*?)"""', code, re.S)
        assert host_side is not None
        with pytest.raises(NameError, match="'np'"):
            # The example's own f-string, evaluated on the host exactly as Python does before run() is called.
            eval(f'f"""{host_side.group(1)}"""', {"i": 0})
        code = corrected(code)
    namespace = run_example(heading, code)
    printed = capsys.readouterr().out
    for section, stdout in RESULT_STDOUT.items():
        if heading.startswith(section):
            assert namespace["result"].stdout == stdout
    if heading.startswith("Docker Backend"):
        assert namespace["result"].exit_code == 0  # ls -la
        copied = docker_client.containers.get("your-container-id").exec_run(["cat", "/container/path/file.py"])
        assert copied.output == b"print('local file')\n"
    expected = {
        "Basic Usage": "Hello from existing container!",
        "Error Handling": "Failed to connect:",
        "Complete Example": "NumPy version:",
    }
    for section, text in expected.items():
        if heading.startswith(section):
            assert text in printed, printed
    if heading.startswith("Complete Example"):
        assert printed.count("Iteration") == 3
    after = _ours(docker_client)
    assert after - before == set()  # every container an example or the library created is gone
