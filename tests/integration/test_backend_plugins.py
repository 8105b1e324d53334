"""Backends as plugins: a package installed into the venv announces a backend through the ``llm_sandbox.backends``
entry points; it is listed without importing its engine code, and ``SandboxSession(backend=name)`` runs on it.

The package is tests/fixtures/backend-plugin (Docker containers under the name ``example-engine``, declaring fewer
guarantees than the docker backend). It is installed with pip at the start of this module and uninstalled at the
end; each check that needs a fresh interpreter (what listing imports) runs one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import (
    BackendCapabilities,
    SandboxSession,
    UnknownOptionError,
    UnsupportedBackendError,
    ValidationError,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from llm_sandbox.backends.docker_engine import DockerBackend
from llm_sandbox.images import default_image
from llm_sandbox.pool import create_pool_manager

PLUGIN_SOURCE = Path(__file__).parents[1] / "fixtures" / "backend-plugin"
PLUGIN_DISTRIBUTION = "llm-sandbox-example-plugin"
PLUGIN = "example-engine"


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A copy: pip writes build files next to the sources, which must stay clean in the checkout.
    source = tmp_path_factory.mktemp("plugin") / "backend-plugin"
    subprocess.run(["cp", "-r", str(PLUGIN_SOURCE), str(source)], check=True)
    _pip("install", "--no-build-isolation", "--no-deps", str(source))
    try:
        yield PLUGIN
    finally:
        _pip("uninstall", "--yes", PLUGIN_DISTRIBUTION)


def _in_fresh_interpreter(code: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_listing_finds_the_plugin_without_importing_its_engine_code(installed_plugin: str) -> None:
    seen = _in_fresh_interpreter(
        "import json, sys\n"
        "import llm_sandbox\n"
        "entries = llm_sandbox.list_backends()\n"
        "print(json.dumps({\n"
        "    'names': [entry.name for entry in entries],\n"
        "    'engine_imported': 'llm_sandbox_example_plugin.engine' in sys.modules,\n"
        "    'sdks': sorted(name for name in ('docker', 'podman', 'kubernetes') if name in sys.modules),\n"
        f"    'declared': llm_sandbox.get_backend({installed_plugin!r}).capabilities.commit,\n"
        "}))\n"
    )
    assert installed_plugin in seen["names"]
    assert "broken-engine" not in seen["names"]  # its declaration cannot be loaded: left out, with a warning
    assert {"docker", "podman", "kubernetes", "micromamba"} <= set(seen["names"])
    assert seen["engine_imported"] is False
    assert seen["sdks"] == []
    assert seen["declared"] is False


def test_a_session_runs_on_the_installed_plugin(installed_plugin: str, docker_client: object) -> None:
    with SandboxSession(backend=installed_plugin, lang="python", runtime_configs={"greeting": "hi"}) as session:
        result = session.run("import os\nprint('from the plugin', os.getuid() != 0)")
        assert (result.exit_code, result.stdout) == (0, "from the plugin True\n")
        files = session.execute_command("ls /")
        assert files.exit_code == 0 and "sandbox" in files.stdout
    from llm_sandbox_example_plugin import engine

    # The runtime option it declared reached its factory, and only there.
    assert engine.BUILT[-1] == {"greeting": "hi"}
    assert get_backend(installed_plugin).origin == "llm_sandbox_example_plugin.declaration:ENTRY"


def test_what_the_plugin_does_not_declare_is_refused_naming_it_and_the_option(installed_plugin: str) -> None:
    with pytest.raises(UnknownOptionError, match=f"container_id means nothing for the {installed_plugin} backend"):
        SandboxSession(backend=installed_plugin, container_id="abc")
    with pytest.raises(UnknownOptionError, match=f"commit_container means nothing for the {installed_plugin}"):
        SandboxSession(backend=installed_plugin, commit_container=True)
    with pytest.raises(UnknownOptionError, match=f"option 'dockerfile' means nothing for the {installed_plugin}"):
        SandboxSession(backend=installed_plugin, dockerfile=__file__)
    with pytest.raises(UnknownOptionError, match=rf"runtime_configs\['mem_limitt'\] means nothing for the {PLUGIN}"):
        SandboxSession(backend=installed_plugin, runtime_configs={"mem_limitt": "1g"})
    with pytest.raises(UnknownOptionError, match=f"the {installed_plugin} backend does not declare pooling"):
        create_pool_manager(backend=installed_plugin, lang="python")


def test_a_plugin_that_cannot_load_says_so_when_asked_for(installed_plugin: str) -> None:
    with pytest.raises(UnsupportedBackendError, match=r"broken-engine.*could not be loaded.*missing_module"):
        SandboxSession(backend="broken-engine")


def test_a_taken_name_cannot_be_registered(installed_plugin: str) -> None:
    for taken in ("docker", "Docker", installed_plugin):
        get_backend(taken)  # the plugin is registered once asked for
        with pytest.raises(ValidationError, match="is taken"):
            register_backend(taken, DockerBackend)
    with pytest.raises(ValidationError, match="cannot be unregistered"):
        unregister_backend("docker")


def test_register_backend_at_run_time_runs_a_session(docker_client: object) -> None:
    built: list[object] = []

    def factory(client: object = None) -> DockerBackend:
        backend = DockerBackend(client)
        built.append(backend)
        return backend

    entry = register_backend(
        "registered-here",
        factory,
        capabilities=BackendCapabilities(pid_namespace=True),
        # The docker backend's own check of runtime_configs: its keys are the engine's.
        runtime_validator="llm_sandbox.backends.runtime_options:validate_runtime_configs",
    )
    try:
        assert entry in list_backends()
        with SandboxSession(backend="Registered-Here", image=default_image("python")) as session:
            assert session.run("print(6 * 7)").stdout == "42\n"
        assert len(built) == 1
        # It declared no resource limits: asking for one would silently not hold, so it is refused.
        with pytest.raises(UnknownOptionError, match=r"\['mem_limit'\] cannot be honoured by the registered-here"):
            SandboxSession(backend="registered-here", runtime_configs={"mem_limit": "1g"})
    finally:
        unregister_backend("registered-here")
    with pytest.raises(UnsupportedBackendError, match="'registered-here' is unknown"):
        SandboxSession(backend="registered-here")


def test_a_factory_that_returns_no_backend_is_refused_when_the_sandbox_is_built() -> None:
    def not_a_backend(client: Any = None) -> Any:
        return object()  # a factory written as for a session-returning API

    register_backend("returns-a-session", not_a_backend)
    try:
        session = SandboxSession(backend="returns-a-session")
        with pytest.raises(Exception, match=r"returned object, not a llm_sandbox\.backends\.base\.Backend"):
            session.open()
        assert not session.is_open
    finally:
        unregister_backend("returns-a-session")
