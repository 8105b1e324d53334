"""Translate Docker SDK and transport exceptions into the library's error tree, at one boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from llm_sandbox.errors import (
    ContainerError,
    ImageNotFoundError,
    SandboxError,
)

ENGINE_HINT = (
    "is the engine running? Start it (as root: `dockerd >/var/log/dockerd.log 2>&1 &`) or point DOCKER_HOST at it"
)


@contextmanager
def engine_errors(action: str, *, missing: type[SandboxError] = ContainerError) -> Iterator[None]:
    """Run an engine call; re-raise SDK errors as library errors naming ``action``, the original chained.

    ``missing`` is the error for a 404 (a missing container, image or path), which callers tell apart.
    """
    import docker.errors
    import requests.exceptions

    try:
        yield
    except SandboxError:
        raise
    except docker.errors.ImageNotFound as error:
        raise ImageNotFoundError(f"{action}: {error.explanation or error}") from error
    except docker.errors.NotFound as error:
        raise missing(f"{action}: {error.explanation or error}") from error
    except docker.errors.APIError as error:
        raise ContainerError(f"{action}: {error.explanation or error}") from error
    except docker.errors.DockerException as error:
        raise ContainerError(f"{action}: {error}; {ENGINE_HINT}") from error
    except requests.exceptions.RequestException as error:
        raise ContainerError(f"{action}: cannot reach the container engine ({error}); {ENGINE_HINT}") from error
