"""What code written for the reference implementation (llm-sandbox 0.3.46) can tell apart, on real engines: it
behaves here as it does there (docs/reference-compatibility.md lists the deliberate differences)."""

from __future__ import annotations

import gc
import importlib
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from harness import MANAGED_LABEL, Harness
from llm_sandbox import (
    InteractiveSandboxSession,
    RestrictedModule,
    SandboxSession,
    SecurityIssueSeverity,
    SecurityPolicy,
)
from llm_sandbox.exceptions import NotOpenSessionError, SandboxTimeoutError, SecurityViolationError
from llm_sandbox.interactive import InteractiveSettings

pytestmark = pytest.mark.backends("docker", "podman", "bubblewrap")

REFERENCE_SESSION_CLASSES = {
    "docker": ("llm_sandbox.docker", "SandboxDockerSession"),
    "podman": ("llm_sandbox.podman", "SandboxPodmanSession"),
}


def test_a_restriction_added_to_the_policy_after_the_session_was_made_is_enforced(backend: Harness) -> None:
    # Reference code adds to its policy and ignores the (None) result: the addition must count.
    policy = SecurityPolicy(severity_threshold=SecurityIssueSeverity.LOW)
    with backend.session(lang="python", security_policy=policy) as session:
        assert session.run("import pickle\nprint('loaded')").stdout == "loaded\n"
        policy.add_restricted_module(RestrictedModule("pickle", "deserialises code", SecurityIssueSeverity.HIGH))
        assert session.is_safe("import pickle")[0] is False
        with pytest.raises(SecurityViolationError, match="pickle"):
            session.run("import pickle\nprint('loaded')")


def test_the_policys_default_threshold_safe_blocks_nothing(backend: Harness) -> None:
    policy = SecurityPolicy(restricted_modules=[RestrictedModule("pickle", "code", SecurityIssueSeverity.HIGH)])
    with backend.session(lang="python", security_policy=policy) as session:
        assert session.is_safe("import pickle") == (True, [])
        assert session.run("import pickle\nprint('loaded')").stdout == "loaded\n"


def test_session_container_is_the_engines_container(backend: Harness, engine_client: Any) -> None:
    session = backend.session(lang="python")
    assert session.container is None
    with session:
        assert session.container is not None
        container = engine_client.containers.get(session.container.id)
        assert MANAGED_LABEL in (container.labels or {})
        assert session.container == session.container.id == session.container_id  # a string too, as on Kubernetes
    assert session.container is None


def test_errors_come_as_the_reference_names_them(backend: Harness, tmp_path: Path) -> None:
    session = backend.session(lang="python")
    with pytest.raises(NotOpenSessionError):
        session.run("print(1)")
    with session:
        with pytest.raises(FileNotFoundError):
            session.copy_from_runtime("/sandbox/not-there", str(tmp_path / "x"))
        with pytest.raises(SandboxTimeoutError):
            session.run("import time\ntime.sleep(30)", timeout=1)
        assert session.run("print('usable')").stdout == "usable\n"
    with pytest.raises(NotOpenSessionError):
        session.execute_command("true")


def test_the_reference_session_class_of_the_engine_runs_there(backend: Harness, engine_client: Any) -> None:
    module, name = REFERENCE_SESSION_CLASSES[backend.name]
    session_class = getattr(importlib.import_module(module), name)
    with session_class(lang="python") as session:
        assert session.run("print(6 * 7)").stdout == "42\n"
        assert session.container is not None
        engine_client.containers.get(session.container.id)


def test_an_install_as_another_user_goes_where_that_user_can_write(backend: Harness) -> None:
    # The code runs as 1000:1000; its libraries go to its own prefix, never into the root-owned venv.
    options = {"runtime_configs": {"user": "1000:1000"}, "workdir": "/tmp/sandbox"}
    with backend.session(lang="python", libraries=["six"], **options) as session:
        result = session.run("import os, six\nprint(os.getuid(), os.getgid(), six.__file__)")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "1000 1000 /opt/llm-sandbox/user/python/six.py\n"
        later = session.run("import tabulate\nprint(tabulate.tabulate([[1, 2]]))", libraries=["tabulate"])
        assert later.exit_code == 0, later.stderr
        assert "1  2" in later.stdout


def test_the_default_python_image_has_numpy_and_pandas(backend: Harness) -> None:
    code = "import numpy as np, pandas as pd\nprint(pd.DataFrame({'x': np.arange(4)})['x'].sum())"
    with backend.session(lang="python", network="none") as session:
        result = session.run(code)
        assert (result.exit_code, result.stdout) == (0, "6\n"), result.stderr


def test_interactive_settings_apply_to_the_session(backend: Harness) -> None:
    settings = InteractiveSettings(timeout=2, history_size=5)
    options = {**backend.session_defaults, "interactive_settings": settings}
    with InteractiveSandboxSession(lang="python", **options) as session:
        assert session.history_size == 5
        session.run("kept = 41")
        started = time.monotonic()
        with pytest.raises(SandboxTimeoutError):
            session.run("while True: pass")  # no timeout of its own: the settings' 2 s stop it
        assert time.monotonic() - started < 15  # not the session's default of 60 s
        assert session.run("print(kept + 1)").stdout == "42\n"


@pytest.mark.requires("attach")
def test_an_open_session_no_longer_referred_to_keeps_its_container(backend: Harness, engine_client: Any) -> None:
    # As the reference's existing_container_demo does: open a session in a function, keep only the container's id,
    # attach to it by id later. The container lives until the session is closed, or the process exits.
    def open_and_forget() -> tuple[str, weakref.ref[SandboxSession]]:
        session = backend.session(lang="python").open()
        session.run("open('/sandbox/data.txt', 'w').write('kept')")
        assert session.container is not None
        return session.container.id, weakref.ref(session)

    container_id, reference = open_and_forget()
    gc.collect()
    forgotten = reference()
    assert forgotten is not None and forgotten.is_open
    try:
        assert engine_client.containers.get(container_id).status == "running"
        with backend.session(lang="python", container_id=container_id) as attached:
            assert attached.run("print(open('/sandbox/data.txt').read())").stdout == "kept\n"
    finally:
        forgotten.close()
