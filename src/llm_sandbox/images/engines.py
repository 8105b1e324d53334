"""The container engines the images are built with, and the streamed child processes that drive them.

Engines are driven through their command-line tools with argument lists, never shell strings. Docker runs with
``DOCKER_BUILDKIT=0`` (the classic builder of Docker 20.10: no heredocs, no ``RUN --mount``). Podman builds
natively with ``--runtime runc`` and explicit ulimits (see ENVIRONMENT notes: crun refuses cgroup v1 "hybrid"
hosts and Podman's default ulimits exceed the host's hard limits); Podman stores the images as
``localhost/llm-sandbox/<lang>:bookworm`` and resolves the short name ``llm-sandbox/<lang>:bookworm`` to it.

Long-running children (debootstrap, ``<engine> build``) go through :func:`run_streaming`, which logs their
output and stops their whole process group if this process is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llm_sandbox.errors import ImageBuildError, UnsupportedBackendError
from llm_sandbox.images import BUILD_ENGINES, IMAGE_REPOSITORY
from llm_sandbox.images.rootfs import SCRATCH_PARENT, scratch_dir

log = logging.getLogger(__name__)

_OUTPUT_TAIL_LINES = 40

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class ImageInfo:
    """What an engine reports about a local image."""

    id: str
    labels: Mapping[str, str]
    size: int


class Engine(Protocol):
    """What the builder needs from a container engine."""

    name: str

    def qualify(self, tag: str) -> str: ...

    def check(self) -> None: ...

    def inspect(self, tag: str) -> ImageInfo | None: ...

    def build(
        self,
        tag: str,
        dockerfile: str,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        no_cache: bool,
    ) -> None: ...

    def import_rootfs(self, root: Path, tag: str, changes: Sequence[str]) -> None: ...

    def remove_if_untagged(self, image_id: str) -> None: ...


# ----------------------------------------------------------------------------------------------------
# Streamed child processes


def run_streaming(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``argv`` logging its output at DEBUG; on failure raise :class:`ImageBuildError` with the tail.

    The child runs in its own process group; if this process is interrupted (Ctrl-C, SIGTERM) the whole group
    is stopped before the exception propagates, so that nothing keeps writing into a directory being removed.
    """
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise ImageBuildError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.rstrip()
            tail.append(text)
            log.debug("  %s", text)
        proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    if proc.returncode != 0:
        output = "\n".join(tail)
        raise ImageBuildError(f"{what} failed with exit status {proc.returncode}; last output:\n{output}")


def _stop_group(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc`` (which this module started), then SIGKILL after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give the rest of its group (dpkg, chroot, ...) a moment to follow.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.1)
        if not _group_alive(proc.pid):
            return
    log.warning("Some processes of group %d did not stop", proc.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------------
# Docker and Podman


class CliEngine:
    """Docker or Podman, driven through its command-line tool."""

    def __init__(self, name: str = "docker", runner: Runner = subprocess.run) -> None:
        if name not in BUILD_ENGINES:
            raise UnsupportedBackendError(f"Images can be built for {' or '.join(BUILD_ENGINES)}, not {name!r}")
        self.name = name
        self._run = runner

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.name == "docker":
            env["DOCKER_BUILDKIT"] = "0"  # Docker 20.10's classic builder; BuildKit is not available here
        return env

    def qualify(self, tag: str) -> str:
        """The name the engine stores ``tag`` under (Podman prefixes unqualified names with localhost/)."""
        if self.name == "podman" and tag.split("/", 1)[0] == IMAGE_REPOSITORY:
            return f"localhost/{tag}"
        return tag

    def _cli(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self._run([self.name, *args], capture_output=True, text=True, errors="replace", env=self.env)

    def check(self) -> None:
        """Raise :class:`ImageBuildError` saying what to do when the engine is missing or not running."""
        if shutil.which(self.name) is None:
            package = "docker.io" if self.name == "docker" else "podman"
            raise ImageBuildError(
                f"The {self.name} command is not installed: apt-get install -y {package} (or run scripts/setup.sh)"
            )
        result = self._cli(["version"])
        if result.returncode != 0:
            advice = (
                "start it: dockerd >/var/log/dockerd.log 2>&1 & (or run scripts/setup.sh)"
                if self.name == "docker"
                else "check `podman info`"
            )
            raise ImageBuildError(f"The {self.name} engine does not answer ({result.stderr.strip()}); {advice}")

    def inspect(self, tag: str) -> ImageInfo | None:
        """The local image ``tag``, or ``None`` when the engine has no such image."""
        result = self._cli(["image", "inspect", self.qualify(tag)])
        if result.returncode != 0:
            message = result.stderr.lower()
            if "no such image" in message or "not known" in message or "not found" in message:
                return None
            raise ImageBuildError(f"{self.name} image inspect {tag} failed: {result.stderr.strip()}")
        try:
            data = json.loads(result.stdout)[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise ImageBuildError(f"{self.name} image inspect {tag} printed unexpected output") from exc
        config = data.get("Config") or {}
        labels = config.get("Labels") or data.get("Labels") or {}
        return ImageInfo(id=str(data.get("Id", "")), labels=dict(labels), size=int(data.get("Size") or 0))

    def build(
        self,
        tag: str,
        dockerfile: str,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        no_cache: bool,
    ) -> None:
        """Build ``dockerfile`` (text) into ``tag``, from an empty context directory under /var/tmp."""
        with scratch_dir("llm-sandbox-build-") as context:
            (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
            argv = [self.name, "build", "--tag", self.qualify(tag), "--file", str(context / "Dockerfile")]
            if self.name == "podman":
                argv += ["--pull=never", "--format", "docker", *_podman_run_options()]
            else:
                argv += ["--rm", "--force-rm"]
            if no_cache:
                argv.append("--no-cache")
            for key, value in build_args.items():
                argv += ["--build-arg", f"{key}={value}"]
            for key, value in labels.items():
                argv += ["--label", f"{key}={value}"]
            argv.append(str(context))
            run_streaming(argv, f"{self.name} build {tag}", self.env)

    def import_rootfs(self, root: Path, tag: str, changes: Sequence[str]) -> None:
        """``tar -C root -c . | <engine> import --change ... - tag``."""
        tar_argv = ["tar", "-C", str(root), "--numeric-owner"]
        tar_argv += ["--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*", "-c", "."]
        import_argv = [self.name, "import"]
        for change in changes:
            import_argv += ["--change", change]
        import_argv += ["-", self.qualify(tag)]
        with (
            tempfile.TemporaryFile(dir=SCRATCH_PARENT) as tar_errors,
            subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=tar_errors) as tar,
        ):
            assert tar.stdout is not None
            try:
                result = self._run(
                    import_argv,
                    stdin=tar.stdout,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    env=self.env,
                )
            finally:
                tar.stdout.close()
                tar.wait()
            tar_errors.seek(0)
            tar_err = tar_errors.read().decode(errors="replace")
        if result.returncode != 0:
            raise ImageBuildError(f"{self.name} import {tag} failed: {result.stderr.strip()}")
        if tar.returncode != 0:
            raise ImageBuildError(f"tar of the rootfs failed with exit status {tar.returncode}: {tar_err.strip()}")

    def remove_if_untagged(self, image_id: str) -> None:
        """Remove a replaced image once nothing tags it; keep it silently if anything still uses it."""
        result = self._cli(["image", "inspect", "--format", "{{json .RepoTags}}", image_id])
        if result.returncode != 0:
            return
        try:
            tags = json.loads(result.stdout.strip() or "null")
        except ValueError:
            return
        if not tags:
            self._cli(["image", "rm", image_id])


def _podman_run_options() -> list[str]:
    """Options Podman needs on this kind of host to run build steps (see the module docstring)."""
    options = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
    if shutil.which("runc") is not None:
        options[:0] = ["--runtime", "runc"]
    return options


__all__ = [
    "CliEngine",
    "Engine",
    "ImageInfo",
    "Runner",
    "run_streaming",
]
