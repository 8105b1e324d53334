"""The public surface is pinned, and importing it loads no engine SDK."""

from __future__ import annotations

import json
import subprocess
import sys

import llm_sandbox
from llm_sandbox import errors

PUBLIC = {
    "ArtifactSandboxSession",
    "AsyncArtifactSandboxSession",
    "AsyncInteractiveSandboxSession",
    "AsyncSandboxSession",
    "BackendCapabilities",
    "BackendDefinition",
    "BackendEntry",
    "CommandEmptyError",
    "ConsoleOutput",
    "ContainerError",
    "DefaultImage",
    "DiskLimitError",
    "ExecutionResult",
    "FileTooLargeError",
    "FileType",
    "ImageBuildError",
    "ImageError",
    "ImageNotFoundError",
    "ImagePullError",
    "InteractiveSandboxSession",
    "InteractiveSettings",
    "InvalidLibraryNameError",
    "KernelType",
    "LanguageNotSupportPlotError",
    "LanguageNotSupportedError",
    "LibraryInstallationError",
    "LibraryInstallationNotSupportedError",
    "MemoryLimitError",
    "MissingDependencyError",
    "NotOpenSessionError",
    "OutputFile",
    "PlotOutput",
    "ProcessLimitError",
    "ResourceError",
    "RestrictedModule",
    "SandboxBackend",
    "SandboxDiedError",
    "SandboxError",
    "SandboxFileNotFoundError",
    "SandboxSession",
    "SandboxTimeoutError",
    "SecurityError",
    "SecurityIssueSeverity",
    "SecurityPattern",
    "SecurityPolicy",
    "SecurityViolationError",
    "SessionConfig",
    "StreamCallback",
    "SupportedLanguage",
    "UnknownOptionError",
    "UnsafeArchiveError",
    "UnsupportedBackendError",
    "ValidationError",
    "create_session",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
    "__version__",
}


def test_all_is_pinned() -> None:
    assert set(llm_sandbox.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(llm_sandbox, name), name


def test_every_error_derives_from_the_root_and_a_builtin() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SandboxError)
        if cls is not errors.SandboxError:
            builtin_bases = [base for base in cls.__mro__ if base.__module__ == "builtins" and base is not object]
            assert len(builtin_bases) > 2, f"{name} has no builtin beyond Exception"
    assert issubclass(errors.SandboxTimeoutError, TimeoutError)
    assert issubclass(errors.ContainerError, RuntimeError)
    assert issubclass(errors.SandboxFileNotFoundError, FileNotFoundError)
    assert issubclass(errors.UnknownOptionError, TypeError)


def test_import_loads_no_engine_sdk() -> None:
    probe = "import sys, llm_sandbox; print(sorted(m for m in ('docker', 'podman', 'kubernetes') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_console_output_and_execution_result_serialise() -> None:
    result = llm_sandbox.ExecutionResult(exit_code=1, stdout="o", stderr="e")
    assert '"plots": []' in result.to_json()
    assert "plots" not in result.to_json(include_plots=False)
    plot = llm_sandbox.PlotOutput(llm_sandbox.FileType.PNG, "iVBO", width=2, height=3, dpi=100)
    output = llm_sandbox.OutputFile("report.csv", "YSxi")
    loaded = json.loads(
        llm_sandbox.ExecutionResult(plots=[plot], files=[output], skipped_artifacts=["big.png"]).to_json()
    )
    assert loaded["plots"] == [{"format": "png", "content_base64": "iVBO", "width": 2, "height": 3, "dpi": 100}]
    assert loaded["files"] == [{"name": "report.csv", "content_base64": "YSxi"}]
    assert loaded["skipped_artifacts"] == ["big.png"]
    assert output.content == b"a,b"
    assert llm_sandbox.ConsoleOutput(exit_code=0).success()
    assert not llm_sandbox.ConsoleOutput(exit_code=0, timed_out=True).success()
