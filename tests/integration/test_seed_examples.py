"""Every Docker example of docs/existing-container-support.md runs as written.

The document's placeholders are made real: containers named exactly as the examples name them, and the registry
image of the "Complete Example" tagged locally from the project's Python image (no registry is reachable here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "existing-container-support.md"
REGISTRY_IMAGE = "ghcr.io/vndee/sandbox-python-311-bullseye"
DOCKER_SECTIONS = ("Basic Usage", "Docker Backend", "Error Handling", "Complete Example", "Migration")


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


def docker_examples() -> list[tuple[str, str]]:
    examples = [(heading, code) for heading, code in python_blocks() if heading.startswith(DOCKER_SECTIONS)]
    # Six blocks: basic, docker, error handling, complete example, and migration before/after.
    assert len(examples) == 6, [heading for heading, _ in examples]
    return examples


@pytest.fixture
def seed_world(
    docker_client: Any, python_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The containers and images the examples name, and a working folder with their local file."""
    docker_client.images.get(python_image).tag(REGISTRY_IMAGE)
    docker_client.images.get(python_image).tag("my-image")
    started = []
    for name in ("abc123def456", "your-container-id", "my-container"):
        started.append(
            docker_client.containers.run(
                python_image, ["sleep", "infinity"], name=name, detach=True, labels={"io.llm-sandbox.test": "1"}
            )
        )
    numpy = started[-1].exec_run(["pip", "install", "--no-input", "numpy"])
    assert numpy.exit_code == 0, numpy.output[-2000:]
    (tmp_path / "local_file.py").write_text("print('local file')\n")
    monkeypatch.chdir(tmp_path)
    try:
        yield
    finally:
        for container in started:
            container.remove(force=True)
        for tag in (REGISTRY_IMAGE, "my-image"):
            docker_client.images.remove(tag)


# The "Complete Example" builds its code with an f-string that also interpolates {np.__version__} and {data} on the
# host, where neither name exists: as printed it raises NameError before any sandbox code runs, with any library.
# The test shows exactly that, then runs the example with only those two braces doubled.
HOST_SIDE_BUG = ("{np.__version__}", "{data}")


def corrected(code: str) -> str:
    for placeholder in HOST_SIDE_BUG:
        code = code.replace(placeholder, "{" + placeholder + "}")
    return code


def run_example(heading: str, code: str) -> None:
    namespace: dict[str, Any] = {"__name__": "__seed_example__"}
    if heading.startswith("Migration"):
        # These two are fragments of the document's flow: they rely on its earlier import, so give them that.
        exec("from llm_sandbox import SandboxSession", namespace)
    exec(compile(code, f"<{heading}>", "exec"), namespace)


def _containers_of(client: Any, image: str) -> set[str]:
    image_id = client.images.get(image).id
    return {container.id for container in client.containers.list(all=True) if container.attrs["Image"] == image_id}


@pytest.mark.parametrize(
    ("heading", "code"), docker_examples(), ids=[f"{i}-{h}" for i, (h, _) in enumerate(docker_examples())]
)
def test_seed_example_runs_as_written(
    heading: str,
    code: str,
    seed_world: None,
    capsys: pytest.CaptureFixture[str],
    docker_client: Any,
    python_image: str,
) -> None:
    before = _containers_of(docker_client, python_image)
    if heading.startswith("Complete Example"):
        host_side = re.search(r'f"""(.*?)"""', code, re.S)
        assert host_side is not None
        with pytest.raises(NameError, match="'np'"):
            # The example's own f-string, evaluated on the host exactly as Python does before run() is called.
            eval(f'f"""{host_side.group(1)}"""', {"i": 0})
        code = corrected(code)
    run_example(heading, code)
    printed = capsys.readouterr().out
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
    after = _containers_of(docker_client, python_image)
    assert after - before == set()  # every container an example or the library created is gone
