"""The one error tree of llm_sandbox.

Every error the library raises derives from :class:`SandboxError`; each leaf also derives from the builtin a
caller would naturally catch, so ``except TimeoutError`` or ``except FileNotFoundError`` keep working::

    SandboxError (Exception)
    ├── ValidationError (ValueError)
    │   ├── CommandEmptyError
    │   ├── LanguageNotSupportedError
    │   ├── LanguageNotSupportPlotError
    │   ├── UnsupportedBackendError
    │   └── InvalidLibraryNameError
    ├── ArgumentTypeError (TypeError)
    ├── UnknownOptionError (TypeError)
    ├── MissingDependencyError (ImportError)
    ├── NotOpenSessionError (RuntimeError)
    ├── ContainerError (RuntimeError)
    │   └── SandboxDiedError
    ├── PoolError (RuntimeError)
    │   ├── PoolExhaustedError
    │   ├── PoolClosedError
    │   └── PoolHealthCheckError
    ├── ImageError (RuntimeError)
    │   ├── ImageNotFoundError (+ LookupError)
    │   ├── ImagePullError
    │   └── ImageBuildError
    ├── LibraryInstallationError (RuntimeError)
    │   └── LibraryInstallationNotSupportedError (+ NotImplementedError)
    ├── SecurityError (PermissionError)
    │   ├── SecurityViolationError
    │   └── UnsafeArchiveError
    ├── SandboxTimeoutError (TimeoutError)
    ├── ResourceError (RuntimeError)
    │   ├── MemoryLimitError (+ MemoryError)
    │   ├── ProcessLimitError
    │   ├── DiskLimitError (+ OSError)
    │   └── FileTooLargeError (+ OSError)
    ├── OutputDecodingError (UnicodeDecodeError)
    ├── SandboxFileNotFoundError (FileNotFoundError)
    └── LocalFileNotFoundError (FileNotFoundError)

Engine SDK exceptions never escape: each backend translates them at its boundary and chains the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_sandbox.data import ConsoleOutput
    from llm_sandbox.security import SecurityPattern


class SandboxError(Exception):
    """Root of every error raised by llm_sandbox."""


class ValidationError(SandboxError, ValueError):
    """An argument or option has a value the library cannot accept."""


class CommandEmptyError(ValidationError):
    """``execute_command`` was given an empty command."""


class LanguageNotSupportedError(ValidationError):
    """The requested language is not one of the supported languages."""


class UnsupportedBackendError(ValidationError):
    """The requested backend is not one of the known backends."""


class InvalidLibraryNameError(ValidationError):
    """A library name looks like an option or shell syntax and was refused before anything ran."""


class ArgumentTypeError(SandboxError, TypeError):
    """An argument has a type the library cannot use (for example code that is not a string)."""


class UnknownOptionError(SandboxError, TypeError):
    """A keyword argument or runtime option is misspelled or means nothing for the chosen backend."""


class MissingDependencyError(SandboxError, ImportError):
    """An optional dependency (a backend SDK) is not installed."""


class NotOpenSessionError(SandboxError, RuntimeError):
    """The session must be opened (``open()`` or ``with``) before this call."""


class ContainerError(SandboxError, RuntimeError):
    """The container (or pod) could not be created, found, started or used."""


class SandboxDiedError(ContainerError):
    """The sandbox stopped running while the session was using it."""


class PoolError(SandboxError, RuntimeError):
    """A pool of sandboxes could not hand one out."""


class PoolExhaustedError(PoolError):
    """Every sandbox of the pool is in use and the exhaustion strategy does not wait (or the wait timed out)."""

    def __init__(self, pool_size: int, timeout: float | None = None) -> None:
        waited = f" within the acquisition_timeout of {timeout:g} s" if timeout is not None else ""
        super().__init__(
            f"all {pool_size} sandbox(es) of the pool are in use and none came free{waited}; raise max_pool_size, "
            "raise acquisition_timeout, or use ExhaustionStrategy.TEMPORARY"
        )
        self.pool_size = pool_size
        self.timeout = timeout


class PoolClosedError(PoolError):
    """The pool was closed: it hands out nothing more."""

    def __init__(self) -> None:
        super().__init__("the pool is closed; create a new one with create_pool_manager()")


class PoolHealthCheckError(PoolError):
    """A sandbox of the pool failed its health check (it was removed)."""

    def __init__(self, container_id: str, reason: str) -> None:
        super().__init__(f"the pool's sandbox {container_id[:12]} failed its health check: {reason}")
        self.container_id = container_id
        self.reason = reason


class ImageError(SandboxError, RuntimeError):
    """An image problem: missing, not pullable, or not buildable."""


class ImageNotFoundError(ImageError, LookupError):
    """The image is neither local nor pullable."""


class ImagePullError(ImageError):
    """Pulling the image failed."""


class ImageBuildError(ImageError):
    """Building an image (from a Dockerfile or a recipe) failed."""


class LibraryInstallationError(SandboxError, RuntimeError):
    """The language's package manager failed; ``output`` holds what it printed."""

    def __init__(self, message: str, output: ConsoleOutput | None = None) -> None:
        super().__init__(message)
        self.output = output


class LibraryInstallationNotSupportedError(LibraryInstallationError, NotImplementedError):
    """The language has no package manager the library can drive."""


class SecurityError(SandboxError, PermissionError):
    """A security rule was broken."""


class SecurityViolationError(SecurityError):
    """The code breaks the session's security policy; nothing was run."""

    def __init__(self, message: str, violations: list[SecurityPattern] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class UnsafeArchiveError(SecurityError):
    """An archive copied out of the sandbox holds a link, device, absolute or escaping name."""


class SandboxTimeoutError(SandboxError, TimeoutError):
    """A run exceeded its time limit; its processes were killed. ``output`` holds what it printed."""

    def __init__(self, message: str, output: ConsoleOutput | None = None, timeout: float | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.timeout = timeout


class ResourceError(SandboxError, RuntimeError):
    """A resource limit of the sandbox was hit. ``output`` holds what the run printed."""

    def __init__(self, message: str, output: ConsoleOutput | None = None) -> None:
        super().__init__(message)
        self.output = output


class MemoryLimitError(ResourceError, MemoryError):
    """The run was killed by the sandbox's memory limit."""


class ProcessLimitError(ResourceError):
    """The run hit the sandbox's process-count limit."""


class DiskLimitError(ResourceError, OSError):
    """The run hit a file-size or disk limit."""


class FileTooLargeError(ResourceError, OSError):
    """A file copied out of the sandbox is larger than the allowed size."""


class SandboxFileNotFoundError(SandboxError, FileNotFoundError):
    """A path asked for inside the sandbox does not exist."""


class OutputDecodingError(SandboxError, UnicodeDecodeError):
    """A run's output is not valid UTF-8 and the session asked for ``encoding_errors="strict"``."""

    def __str__(self) -> str:
        return (
            f"{UnicodeDecodeError.__str__(self)} in the run's output (encoding_errors='strict'; 'replace' gives "
            "U+FFFD instead); the session goes on"
        )


class LocalFileNotFoundError(SandboxError, FileNotFoundError):
    """A local file or directory (on the host, not in the sandbox) does not exist."""


__all__ = [
    "ArgumentTypeError",
    "CommandEmptyError",
    "ContainerError",
    "DiskLimitError",
    "FileTooLargeError",
    "ImageBuildError",
    "ImageError",
    "ImageNotFoundError",
    "ImagePullError",
    "InvalidLibraryNameError",
    "LanguageNotSupportPlotError",
    "LanguageNotSupportedError",
    "LibraryInstallationError",
    "LibraryInstallationNotSupportedError",
    "LocalFileNotFoundError",
    "MemoryLimitError",
    "MissingDependencyError",
    "NotOpenSessionError",
    "OutputDecodingError",
    "PoolClosedError",
    "PoolError",
    "PoolExhaustedError",
    "PoolHealthCheckError",
    "ProcessLimitError",
    "ResourceError",
    "SandboxDiedError",
    "SandboxError",
    "SandboxFileNotFoundError",
    "SandboxTimeoutError",
    "SecurityError",
    "SecurityViolationError",
    "UnknownOptionError",
    "UnsafeArchiveError",
    "UnsupportedBackendError",
    "ValidationError",
]


class LanguageNotSupportPlotError(ValidationError):
    """Plots were asked for (``enable_plotting=True``) in a language whose figures the library cannot capture."""
