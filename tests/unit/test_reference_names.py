"""Every public import path of the reference implementation (llm-sandbox 0.3.46) resolves here, to our own class.

The lists below are facts of the reference's API (its ``__all__`` and the modules its documentation and examples
import from); the few names we do not provide are listed with the reason, and a test checks they really are absent,
so neither list can drift. Where the reference is installed (``bench/`` installs it into ``.bench/ref-venv``), a
test also reads its modules and checks that the lists name everything public there.
"""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import pytest

import llm_sandbox
from llm_sandbox import errors
from llm_sandbox.session import SandboxSession

REFERENCE_NAMES: dict[str, tuple[str, ...]] = {
    "llm_sandbox": (
        "ArtifactSandboxSession",
        "BackendCapabilities",
        "BackendDefinition",
        "ConsoleOutput",
        "ContainerError",
        "DefaultImage",
        "ExecutionResult",
        "FileType",
        "InteractiveSandboxSession",
        "KernelType",
        "LocalSandboxConfig",
        "PlotOutput",
        "ResourceError",
        "SandboxBackend",
        "SandboxError",
        "SandboxSession",
        "SeccompPolicy",
        "SecurityError",
        "SecurityIssueSeverity",
        "SecurityPattern",
        "SecurityPolicy",
        "SessionConfig",
        "StreamCallback",
        "SupportedLanguage",
        "ValidationError",
        "WindowsMxcConfig",
        "create_session",
        "get_backend",
        "list_backends",
        "register_backend",
    ),
    "llm_sandbox.exceptions": (
        "CommandEmptyError",
        "CommandFailedError",
        "ContainerError",
        "ExtraArgumentsError",
        "ImageNotFoundError",
        "ImagePullError",
        "InvalidRegexPatternError",
        "LanguageHandlerNotInitializedError",
        "LanguageNotSupportPlotError",
        "LanguageNotSupportedError",
        "LibraryInstallationNotSupportedError",
        "MissingDependencyError",
        "NotOpenSessionError",
        "PackageManagerError",
        "ResourceError",
        "SandboxError",
        "SandboxTimeoutError",
        "SecurityError",
        "SecurityViolationError",
        "UnsupportedBackendError",
        "ValidationError",
    ),
    "llm_sandbox.const": ("DefaultImage", "EncodingErrorsType", "SandboxBackend", "StrEnum", "SupportedLanguage"),
    "llm_sandbox.data": ("ConsoleOutput", "ExecutionResult", "FileType", "PlotOutput", "StreamCallback"),
    "llm_sandbox.security": (
        "PACKAGE_NAME_PATTERNS",
        "RestrictedModule",
        "SecurityIssueSeverity",
        "SecurityPattern",
        "SecurityPolicy",
        "validate_package_name",
    ),
    "llm_sandbox.interactive": ("InteractiveSandboxSession", "InteractiveSettings", "KernelType"),
    "llm_sandbox.pool": (
        "ArtifactPooledSandboxSession",
        "ContainerPoolManager",
        "ContainerState",
        "ExhaustionStrategy",
        "PoolClosedError",
        "PoolConfig",
        "PoolExhaustedError",
        "PoolHealthCheckError",
        "PooledContainer",
        "PooledSandboxSession",
        "create_pool_manager",
    ),
    "llm_sandbox.session": (
        "ArtifactSandboxSession",
        "ContainerPoolManager",
        "InteractiveSandboxSession",
        "PooledSandboxSession",
        "SandboxSession",
        "create_session",
    ),
    "llm_sandbox.docker": ("DockerContainerAPI", "SandboxDockerSession"),
    "llm_sandbox.podman": ("PodmanContainerAPI", "SandboxPodmanSession"),
    "llm_sandbox.kubernetes": ("KubernetesContainerAPI", "SandboxKubernetesSession"),
    "llm_sandbox.micromamba": ("MicromambaContainerAPI", "MicromambaSession"),
    "llm_sandbox.core.session_base": ("BaseSession",),
    "llm_sandbox.core.config": ("SessionConfig",),
}

_ENGINE_API = (
    "the reference's wrapper of one engine's SDK calls; ours sit behind the backend contract "
    "(llm_sandbox.backends.base), which user code never calls"
)
NOT_PROVIDED: dict[tuple[str, str], str] = {
    ("llm_sandbox", "LocalSandboxConfig"): "configures the reference's daemonless nsjail/bubblewrap backends",
    ("llm_sandbox", "SeccompPolicy"): "the reference's seccomp profile for its daemonless backends",
    ("llm_sandbox", "WindowsMxcConfig"): "configures the reference's Windows backend; this library runs on Linux",
    ("llm_sandbox.const", "StrEnum"): "the reference's helper base of its enums; ours derive from str and Enum",
    ("llm_sandbox.docker", "DockerContainerAPI"): _ENGINE_API,
    ("llm_sandbox.podman", "PodmanContainerAPI"): _ENGINE_API,
    ("llm_sandbox.kubernetes", "KubernetesContainerAPI"): _ENGINE_API,
    ("llm_sandbox.micromamba", "MicromambaContainerAPI"): _ENGINE_API,
}

REFERENCE_VENV_PYTHON = Path(__file__).resolve().parents[2] / ".bench" / "ref-venv" / "bin" / "python"


def _provided() -> list[tuple[str, str]]:
    return [
        (module, name)
        for module, names in REFERENCE_NAMES.items()
        for name in names
        if (module, name) not in NOT_PROVIDED
    ]


@pytest.mark.parametrize(("module", "name"), _provided(), ids=str)
def test_the_reference_import_path_resolves(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"from {module} import {name} fails"


@pytest.mark.parametrize(("module", "name"), list(NOT_PROVIDED), ids=str)
def test_a_name_listed_as_not_provided_is_really_absent(module: str, name: str) -> None:
    # Once one of these lands, it moves to the provided names (and its row here goes).
    assert not hasattr(importlib.import_module(module), name)


def test_errors_under_the_reference_module_path_are_ours() -> None:
    exceptions = importlib.import_module("llm_sandbox.exceptions")
    for name in errors.__all__:
        assert getattr(exceptions, name) is getattr(errors, name)
    assert exceptions.ExtraArgumentsError is errors.UnknownOptionError
    assert exceptions.PackageManagerError is errors.LibraryInstallationNotSupportedError
    assert exceptions.InvalidRegexPatternError is errors.ValidationError
    with pytest.raises(exceptions.InvalidRegexPatternError):
        llm_sandbox.SecurityPattern("(", "not a regex", llm_sandbox.SecurityIssueSeverity.HIGH)
    with pytest.raises(exceptions.ExtraArgumentsError):
        SandboxSession(langg="python")


@pytest.mark.parametrize(
    ("module", "name", "backend_name"),
    [
        ("llm_sandbox.docker", "SandboxDockerSession", "docker"),
        ("llm_sandbox.podman", "SandboxPodmanSession", "podman"),
        ("llm_sandbox.kubernetes", "SandboxKubernetesSession", "kubernetes"),
        ("llm_sandbox.micromamba", "MicromambaSession", "micromamba"),
    ],
)
def test_the_backend_session_classes_are_sessions_on_their_backend(module: str, name: str, backend_name: str) -> None:
    session_class = getattr(importlib.import_module(module), name)
    assert issubclass(session_class, SandboxSession)
    session = session_class(lang="python")  # construction does no container work
    assert session.options.sandbox.backend.name == backend_name


def test_base_classes_and_factories_are_ours() -> None:
    base = importlib.import_module("llm_sandbox.core.session_base").BaseSession
    assert base is SandboxSession
    assert issubclass(llm_sandbox.InteractiveSandboxSession, base)
    assert llm_sandbox.create_session is SandboxSession
    assert importlib.import_module("llm_sandbox.session").create_session is SandboxSession
    assert llm_sandbox.SessionConfig is type(SandboxSession().options)
    assert llm_sandbox.DefaultImage.PYTHON == "llm-sandbox/python:bookworm"
    assert importlib.import_module("llm_sandbox.const").DefaultImage is llm_sandbox.DefaultImage
    security = importlib.import_module("llm_sandbox.security")
    assert security.validate_package_name("numpy", "python") == "numpy"
    with pytest.raises(errors.ValidationError):
        security.validate_package_name("--index-url=http://evil", "python")
    assert security.PACKAGE_NAME_PATTERNS["python"].fullmatch("pandas")


def test_importing_the_reference_paths_loads_no_engine_sdk() -> None:
    modules = ", ".join(repr(module) for module in REFERENCE_NAMES)
    probe = (
        f"import importlib, sys\nfor m in ({modules},): importlib.import_module(m)\n"
        "print(sorted(m for m in ('docker', 'podman', 'kubernetes') if m in sys.modules))"
    )
    python = Path(__import__("sys").executable)
    output = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.skipif(not REFERENCE_VENV_PYTHON.exists(), reason="the reference is not installed (bench/ installs it)")
def test_the_lists_name_everything_public_in_the_installed_reference() -> None:
    probe = (
        "import importlib, json, sys\n"
        "names = {}\n"
        "for module in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        loaded = importlib.import_module(module)\n"
        "    except ImportError:  # a backend module whose SDK the bench did not install\n"
        "        continue\n"
        "    public = getattr(loaded, '__all__', None)\n"
        "    if public is None:\n"
        "        public = [n for n, v in vars(loaded).items() if not n.startswith('_')\n"
        "                  and getattr(v, '__module__', None) == loaded.__name__]\n"
        "    names[module] = sorted(public)\n"
        "print(json.dumps(names))"
    )
    modules = list(REFERENCE_NAMES)
    completed = subprocess.run(
        [str(REFERENCE_VENV_PYTHON), "-c", probe, json.dumps(modules)], capture_output=True, text=True, check=True
    )
    found = json.loads(completed.stdout)
    assert "llm_sandbox" in found and "llm_sandbox.exceptions" in found
    for module, names in found.items():
        assert set(names) <= set(REFERENCE_NAMES[module]), module


def test_the_enums_read_as_their_values_as_the_references_do() -> None:
    # Reference code formats them into strings and passes them where names are expected (a pool's lang=...).
    language, backend = llm_sandbox.SupportedLanguage.PYTHON, llm_sandbox.SandboxBackend.PODMAN
    assert (str(language), f"{backend}") == ("python", "podman")
    assert llm_sandbox.SupportedLanguage("Python") is language
    assert llm_sandbox.SandboxBackend("DOCKER") is llm_sandbox.SandboxBackend.DOCKER
    with pytest.raises(ValueError):
        llm_sandbox.SupportedLanguage("cobol")
