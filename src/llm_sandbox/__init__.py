"""llm_sandbox: run untrusted, LLM-generated code safely inside containers.

Importing the package loads no engine SDK; the Docker, Podman and Kubernetes clients load when a backend is used.
"""

from llm_sandbox._version import __version__
from llm_sandbox.aio import AsyncArtifactSandboxSession, AsyncInteractiveSandboxSession, AsyncSandboxSession
from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.compat import DefaultImage, SessionConfig, create_session
from llm_sandbox.const import SandboxBackend, SupportedLanguage
from llm_sandbox.data import ConsoleOutput, ExecutionResult, FileType, OutputFile, PlotOutput, StreamCallback
from llm_sandbox.errors import (
    CommandEmptyError,
    ContainerError,
    DiskLimitError,
    FileTooLargeError,
    ImageBuildError,
    ImageError,
    ImageNotFoundError,
    ImagePullError,
    InvalidLibraryNameError,
    LanguageNotSupportedError,
    LanguageNotSupportPlotError,
    LibraryInstallationError,
    LibraryInstallationNotSupportedError,
    MemoryLimitError,
    MissingDependencyError,
    NotOpenSessionError,
    ProcessLimitError,
    ResourceError,
    SandboxDiedError,
    SandboxError,
    SandboxFileNotFoundError,
    SandboxTimeoutError,
    SecurityError,
    SecurityViolationError,
    UnknownOptionError,
    UnsafeArchiveError,
    UnsupportedBackendError,
    ValidationError,
)
from llm_sandbox.interactive import InteractiveSandboxSession, InteractiveSettings, KernelType
from llm_sandbox.security import RestrictedModule, SecurityIssueSeverity, SecurityPattern, SecurityPolicy
from llm_sandbox.session import SandboxSession

__all__ = [
    "ArtifactSandboxSession",
    "AsyncArtifactSandboxSession",
    "AsyncInteractiveSandboxSession",
    "AsyncSandboxSession",
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
    "__version__",
    "create_session",
]
