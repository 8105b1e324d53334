"""Translate engine SDK and transport exceptions into the library's error tree, at one boundary per backend."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from llm_sandbox.errors import ContainerError, ImageNotFoundError, SandboxError

ENGINE_HINTS = {
    "docker": "is the engine running? Start it (as root: `dockerd >/var/log/dockerd.log 2>&1 &`) or point DOCKER_HOST "
    "at it",
    "podman": "is the Podman service running? Start it (as root: `podman system service --time=0 "
    "unix:///run/podman/podman.sock &`) or point CONTAINER_HOST at it",
}
# Each SDK's error classes, by name: (root, not found, image not found, API error).
SDK_ERRORS = {
    "docker": ("docker.errors", "DockerException", "NotFound", "ImageNotFound", "APIError"),
    "podman": ("podman.errors", "PodmanError", "NotFound", "ImageNotFound", "APIError"),
}


def _classes(sdk: str) -> tuple[type[BaseException], ...]:
    module_name, *names = SDK_ERRORS[sdk]
    module = importlib.import_module(module_name)
    return tuple(getattr(module, name) for name in names)


def status_code(error: BaseException) -> int | None:
    """The HTTP status an SDK error carries, if any."""
    code = getattr(error, "status_code", None)
    if code is None:
        response = getattr(error, "response", None)
        code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def is_missing(sdk: str, error: BaseException) -> bool:
    _root, not_found, _image, api_error = _classes(sdk)
    if isinstance(error, not_found) or (isinstance(error, api_error) and status_code(error) == 404):
        return True
    # Podman reports a container removed under its feet as a 500 "no such container".
    return isinstance(error, api_error) and "no such container" in str(error)


def is_gone_or_going(sdk: str, error: BaseException) -> bool:
    """Whether removing a container failed only because it is gone already, or the engine is removing it itself
    (auto-remove once its keep-alive ended)."""
    return is_missing(sdk, error) or (status_code(error) == 409 and "progress" in str(error))


def is_image_missing(sdk: str, error: BaseException) -> bool:
    # Podman answers a create from a missing image with a plain API error saying "image not known".
    return isinstance(error, _classes(sdk)[2]) or "image not known" in str(error)


@contextmanager
def engine_errors(action: str, *, sdk: str = "docker", missing: type[SandboxError] = ContainerError) -> Iterator[None]:
    """Run an engine call; re-raise SDK errors as library errors naming ``action``, the original chained.

    ``missing`` is the error for a 404 (a missing container, image or path), which callers tell apart.
    """
    import requests.exceptions

    root, not_found, image_not_found, api_error = _classes(sdk)
    try:
        yield
    except SandboxError:
        raise
    except image_not_found as error:
        raise ImageNotFoundError(f"{action}: {_explain(error)}") from error
    except not_found as error:
        raise missing(f"{action}: {_explain(error)}") from error
    except api_error as error:
        if status_code(error) == 404:
            raise missing(f"{action}: {_explain(error)}") from error
        raise ContainerError(f"{action}: {_explain(error)}") from error
    except root as error:
        raise ContainerError(f"{action}: {error}; {ENGINE_HINTS[sdk]}") from error
    except requests.exceptions.HTTPError as error:  # raw API calls: the engine answered, with an error status
        if status_code(error) == 404:
            raise missing(f"{action}: {_response_message(error)}") from error
        raise ContainerError(f"{action}: {_response_message(error)}") from error
    except requests.exceptions.RequestException as error:
        raise ContainerError(f"{action}: cannot reach the container engine ({error}); {ENGINE_HINTS[sdk]}") from error


def _response_message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    try:
        message = response.json().get("message") if response is not None else None
    except ValueError:
        message = None
    return str(message or error)


def _explain(error: BaseException) -> str:
    return str(getattr(error, "explanation", None) or error)
