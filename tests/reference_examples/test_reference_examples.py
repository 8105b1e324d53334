"""The reference implementation's own example scripts (the ``examples/`` of llm-sandbox 0.3.46), run unchanged
against this library on Docker and Podman (and on the in-repo fake Kubernetes API server where an example also
uses Kubernetes): each one that can work on these machines, and the list of those that cannot, with the reason.

The reference's source distribution is fetched from the package index for the run (never stored in the
repository), and the engines' tags give its default image names our images (configuration, not an edit of any
example). The suite is kept out of the default test run (``--ignore`` in pyproject.toml):
``scripts/reference_examples.sh`` runs it.

An example passes when it exits with 0, prints no traceback and logs no error (the examples catch most of their
own failures and log them, so the exit code alone would hide them), and prints what its success looks like.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.images import default_image

# The examples talk to the real engines; the suite's leak check (tests/conftest.py) then also covers whatever the
# examples' sessions leave behind.
pytestmark = pytest.mark.docker

PODMAN_SOCKET = "unix:///run/podman/podman.sock"
EXAMPLE_TIMEOUT_S = 900


REFERENCE = "llm-sandbox==0.3.46"
SDIST = "llm_sandbox-0.3.46.tar.gz"
SDIST_SHA256 = "4a5346fdf42b8367cc6a6d0d05bd0a8b231de7126c480d0926a5409f2a14eaf3"

# The reference's DefaultImage names (and the public image its read-only Kubernetes example names), and our
# language's image each one stands for.
REFERENCE_IMAGES = {
    "python:3.11-slim": "python",
    "ghcr.io/vndee/sandbox-python-311-bullseye:latest": "python",
    "ghcr.io/vndee/sandbox-java-11-bullseye:latest": "java",
    "ghcr.io/vndee/sandbox-node-22-bullseye:latest": "javascript",
    "ghcr.io/vndee/sandbox-cpp-11-bullseye:latest": "cpp",
    "ghcr.io/vndee/sandbox-go-123-bullseye:latest": "go",
    "ghcr.io/vndee/sandbox-ruby-302-bullseye:latest": "ruby",
    "ghcr.io/vndee/sandbox-r-451-bullseye:latest": "r",
}


@pytest.fixture(scope="session")
def reference_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference's source distribution, downloaded and unpacked; its examples expect to run from its root."""
    folder = tmp_path_factory.mktemp("reference-sdist")
    download = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-d", str(folder)]
    subprocess.run([*download, REFERENCE], check=True, capture_output=True, timeout=300)
    archive = folder / SDIST
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert digest == SDIST_SHA256, f"{SDIST} from the package index is not the one this suite was written for"
    with tarfile.open(archive) as bundle:
        bundle.extractall(folder, filter="data")
    return folder / SDIST.removesuffix(".tar.gz")


def _tag_reference_names(client: Any) -> list[str]:
    """Tag our default images with the reference's image names on one engine; the names this call added."""
    added = []
    for name, lang in REFERENCE_IMAGES.items():
        try:
            client.images.get(name)
            continue  # already there (someone else's): leave it alone
        except Exception:
            pass
        try:
            image = client.images.get(default_image(lang))
        except Exception:
            continue  # that language's image is not built here; an example needing it fails and says so
        repository, tag = name.rsplit(":", 1)
        image.tag(repository, tag)
        added.append(name)
    return added


@pytest.fixture(scope="session")
def reference_image_names(docker_client: Any, podman_client: Any) -> Iterator[None]:
    """The reference's default image names, as the engines' tags of our images, for the run (configuration, not an
    edit of any example); the tags this fixture added are removed afterwards (the images stay)."""
    added = [(client, _tag_reference_names(client)) for client in (docker_client, podman_client)]
    yield
    for client, tags in added:
        for tag in tags:
            try:
                client.images.remove(tag)  # removes the tag only: the image keeps its own name
            except Exception as error:  # gone already (the engine's images are shared with whoever else uses it)
                if "not found" not in str(error).lower() and "no such image" not in str(error).lower():
                    raise


@dataclass(frozen=True)
class Run:
    """One run of an example: its arguments, what its output must contain, and the error lines it logs on
    purpose (a demonstration of a refused or failing call), as regexes."""

    example: str
    args: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    expected_errors: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return " ".join((self.example, *self.args))


# The example's own self-check of this scenario expects `import os` to pass a policy that restricts `os` at HIGH
# above its MEDIUM threshold: the reference blocks it too, and so do we.
_OS_RESTRICTED = r"❌ FAIL - File System Traversal"

_UNLUCKY = r" - ERROR - All attempts failed due to timeout\."

RUNS: tuple[Run, ...] = (
    Run("async_example.py", expect=("Sync result: Hello, World!", "Async result: Hello, Async!")),
    Run("container_user_privilege.py", expect=("=== All tests completed ===",)),
    Run("copy_demo.py", ("docker",), expect=("Demo completed successfully",)),
    Run("copy_demo.py", ("podman",), expect=("Demo completed successfully",)),
    Run("copy_demo.py", ("kubernetes",), expect=("Demo completed successfully",)),
    Run("existing_container_demo.py", expect=("Found existing data: Custom environment data",)),
    Run("interactive_session_demo.py"),
    Run("interactive_session_podman.py"),
    Run("interactive_session_kubernetes.py"),
    Run("k8s_readonly_file_system.py"),
    Run("pip_warning.py"),
    Run("plot_clearing_example.py"),
    Run("pool_concurrent_demo.py", expect=("Correctly raised: PoolExhaustedError",)),
    Run("pool_monitoring_demo.py"),
    Run("python_artifact.py", expect=("Captured",)),
    Run("python_simple_artifact.py"),
    Run("r_plot_clearing_example.py"),
    # Its retry demo sleeps a random 1, 3 or 5 s under a 2 s timeout, three times: all three time out in about
    # 30 % of the runs, and it logs that as an error, by design.
    Run("sandbox_timeout.py", expect=("Overall: 15 tests passed, 0 tests failed",), expected_errors=(_UNLUCKY,)),
    Run("security_integration_tests.py", expected_errors=(_OS_RESTRICTED,), expect=("Tests Passed: 10/10",)),
    Run("security_policy_examples.py"),
    Run("security_policy_presets.py"),
    Run("skip_environment_setup_demo.py"),
    Run("streaming_callbacks_demo.py"),
    Run("test_copy_functions.py", expect=("Overall:",)),
    Run("test_exit_codes.py"),
    Run("test_security.py"),
    Run("timeout_demo.py"),
)

_NO_MODEL_KEY = "drives a model provider's agent framework: needs that framework and the provider's API key"
_NO_CRAN = (
    "installs R packages from CRAN (dplyr, tidyverse, ...), which these machines cannot reach (no CRAN mirror; the "
    "R image carries ggplot2 and lattice from Debian)"
)
_FAILED_INSTALL_AND_GO = (
    "its C++ part installs `libstdc++`, which is no Debian package (apt-get refuses it): the reference goes on "
    "after a failed install, ours raises LibraryInstallationError (a deliberate difference, "
    "docs/reference-compatibility.md); its Go part needs the Go module proxy, which these machines cannot reach"
)
_AUTHORS_SOCKET = "makes its engine client on a socket path of its author's machine ({path})"
NOT_HERE: dict[str, str] = {
    "code_runner_docker.py": _FAILED_INSTALL_AND_GO,
    "code_runner_podman.py": _FAILED_INSTALL_AND_GO,
    "code_runner_k8s.py": _FAILED_INSTALL_AND_GO,
    "code_runner_micromamba.py": (
        "needs an image with a real micromamba (ghcr.io/longevity-genie/just-agents/biosandbox): no image registry "
        "and no micromamba binary can be reached here"
    ),
    "code_runner_bubblewrap.py": "the reference's bubblewrap backend (backend='bubblewrap'): a capability to come",
    "code_runner_nsjail.py": "the reference's nsjail backend: not a backend of this library",
    "code_runner_windows_mxc.py": "the reference's Windows backend: Windows only",
    "code_runner_wsl2_bubblewrap.py": "the reference's WSL2 backend: Windows only",
    "langgraph_tool.py": _NO_MODEL_KEY,
    "pool_kubernetes_demo.py": (
        "its last demo reads get_stats()['max_pool_size'], a key neither the reference's pool statistics nor ours "
        "have (they say max_size): it stops there on the reference too; every demo before it runs here (on the "
        "fake Kubernetes API server)"
    ),
    "pool_artifact_demo.py": _AUTHORS_SOCKET.format(path="unix:///Users/vndee/.docker/run/docker.sock"),
    "pool_basic_demo.py": _AUTHORS_SOCKET.format(path="a macOS podman-machine socket under /var/folders"),
    "r_artifact_demo.py": _NO_CRAN,
    "r_simple_computing_demo.py": _NO_CRAN,
    "r_simple_demo.py": _NO_CRAN,
    **{
        f"agent_sdks/{name}": _NO_MODEL_KEY
        for name in (
            "ag2_tool.py",
            "claude_agent_sdk_tool.py",
            "crewai_tool.py",
            "deepagents_tool.py",
            "google_adk_tool.py",
            "langchain_tool.py",
            "llamaindex_tool.py",
            "openai_agents_tool.py",
            "pydantic_ai_tool.py",
            "smolagents_tool.py",
            "strands_tool.py",
        )
    },
}


def test_the_lists_cover_every_example(reference_source: Path) -> None:
    folder = reference_source / "examples"
    examples = {path.relative_to(folder).as_posix() for path in folder.rglob("*.py")} - {"__init__.py"}
    listed = {run.example for run in RUNS} | set(NOT_HERE)
    assert examples == listed, f"not listed: {sorted(examples - listed)}; listed but gone: {sorted(listed - examples)}"
    assert not {run.example for run in RUNS} & set(NOT_HERE)


# A failure the example caught and logged, or its own self-check reporting one.
_ERROR_LINE = re.compile(r"^.*(?: - (?:ERROR|CRITICAL) - |❌ FAIL|\| ❌ |\b[1-9][0-9]* tests? failed).*$", re.MULTILINE)
# A traceback of the host process (the example or this library), as opposed to one the sandboxed code printed.
_HOST_TRACEBACK = re.compile(
    r'Traceback \(most recent call last\):\n\s+File "[^"]*(?:examples/|site-packages/|llm_sandbox/)'
)


# Where a log record starts (the examples log with "%(asctime)s - %(levelname)s - %(message)s").
_RECORD_START = re.compile(r"^(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )", re.MULTILINE)


def _without_expected_errors(output: str, expected: tuple[str, ...]) -> str:
    """The output without the log records (an error line and the traceback logged with it) an example writes on
    purpose."""
    records = _RECORD_START.split(output)
    return "".join(record for record in records if not any(re.search(pattern, record) for pattern in expected))


@pytest.mark.timeout(EXAMPLE_TIMEOUT_S + 60)
@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.id)
def test_the_reference_example_runs_here(
    run: Run, reference_source: Path, reference_image_names: None, fake_kube: Any, tmp_path: Path
) -> None:
    environment = {
        **os.environ,
        "CONTAINER_HOST": PODMAN_SOCKET,  # PodmanClient.from_env(), as the examples make their Podman clients
        "KUBECONFIG": str(fake_kube.kubeconfig_path),
        "PYTHONUNBUFFERED": "1",
    }
    completed = subprocess.run(
        [sys.executable, f"examples/{run.example}", *run.args],
        cwd=reference_source,
        env=environment,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_S,
        check=False,
    )
    output = completed.stdout + completed.stderr
    (tmp_path / "output.txt").write_text(output)  # kept by pytest for a look after a failure
    tail = output[-6000:]
    assert completed.returncode == 0, f"exit {completed.returncode}:\n{tail}"
    checked = _without_expected_errors(output, run.expected_errors)
    assert not _HOST_TRACEBACK.search(checked), tail
    unexpected = _ERROR_LINE.findall(checked)
    assert not unexpected, "\n".join(unexpected[:20])
    for text in run.expect:
        assert text in output, f"{text!r} not in the output:\n{tail}"
