"""The root filesystems of Bubblewrap sandboxes: an image of Docker or Podman, exported once into a plain folder.

A sandbox's root is the image's filesystem, as ``docker export`` of a container that never starts gives it. Each
image id is exported once per host, into ``/var/cache/llm-sandbox/rootfs/<image id>/rootfs`` (root-only), next to
the parts of the image's configuration a sandbox needs (``config.json``: its environment). A lock file per image
id keeps two processes from exporting the same image at once; the export goes to a private folder renamed into
place when complete, so a folder in the cache is always whole. Once exported, an image needs no engine: when none
is reachable (or none has the image any more) the newest export of that image name is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_sandbox.errors import ContainerError, ImageNotFoundError
from llm_sandbox.labels import sandbox_labels

logger = logging.getLogger(__name__)

CACHE_ROOT = Path("/var/cache/llm-sandbox/rootfs")
ENGINES = ("docker", "podman")
EXPORT_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImageRootfs:
    """An exported image: its root folder and the environment its configuration sets (PATH, LANG, ...)."""

    image: str
    path: Path
    environment: dict[str, str]


def image_environment(config: dict[str, Any]) -> dict[str, str]:
    """The ``Env`` of an image's configuration ("NAME=value" items) as a mapping."""
    found: dict[str, str] = {}
    for item in config.get("Env") or []:
        name, separator, value = str(item).partition("=")
        if separator and name:
            found[name] = value
    return found


def cache_key(image_id: str) -> str:
    """The cache folder's name for an image id ("sha256:abc..." -> "abc...")."""
    key = image_id.rpartition(":")[2]
    if not key or not all(char in "0123456789abcdef" for char in key):
        raise ContainerError(f"the engine gave an image id the cache cannot name a folder after: {image_id!r}")
    return key


class RootfsCache:
    """Exported image roots under ``root``, made from whichever engine (Docker, then Podman) has the image."""

    def __init__(self, root: Path = CACHE_ROOT, clients: dict[str, Any] | None = None) -> None:
        self.root = root
        self._clients = clients

    def rootfs(self, image: str) -> ImageRootfs:
        """The exported root of ``image``, exported now if this host has none yet; ImageNotFoundError (saying
        what to do) when no reachable engine has the image."""
        try:
            engine, client, found = self._find(image)
        except ImageNotFoundError:
            cached = self._cached(image)  # no engine has it now (or none runs): an earlier export will do
            if cached is None:
                raise
            return cached
        key = cache_key(str(found.id))
        folder = self.root / key
        config = dict((found.attrs or {}).get("Config") or {})
        if not (folder / "rootfs").is_dir():
            with self._lock(key):
                if not (folder / "rootfs").is_dir():
                    self._export(engine, client, image, folder, config)
        return ImageRootfs(image, folder / "rootfs", image_environment(config))

    def _cached(self, image: str) -> ImageRootfs | None:
        """The newest complete export of an image by this name, for a host whose engine is not running."""
        exports = []
        for config_file in self.root.glob("*/config.json") if self.root.is_dir() else []:
            try:
                saved = json.loads(config_file.read_text())
            except (OSError, ValueError):
                continue
            if saved.get("image") == image and (config_file.parent / "rootfs").is_dir():
                exports.append((config_file.stat().st_mtime, config_file.parent, dict(saved.get("config") or {})))
        if not exports:
            return None
        _, folder, config = max(exports, key=lambda export: export[0])
        return ImageRootfs(image, folder / "rootfs", image_environment(config))

    def _find(self, image: str) -> tuple[str, Any, Any]:
        tried: list[str] = []
        for engine in ENGINES:
            client = self._client(engine)
            if client is None:
                tried.append(f"{engine} is not reachable")
                continue
            try:
                return engine, client, client.images.get(image)
            except Exception as error:  # noqa: BLE001 - each SDK has its own "not found"; the next engine is tried
                tried.append(f"{engine} does not have it ({type(error).__name__})")
        raise ImageNotFoundError(
            f"the bubblewrap backend runs the filesystem of an image of Docker or Podman, and {image!r} is in "
            f"neither ({'; '.join(tried)}). Build or pull it into Docker or Podman first (the default images: "
            "python -m llm_sandbox.images build <language>); the sandbox's root is exported from it once"
        )

    def _client(self, engine: str) -> Any:
        if self._clients is not None:
            return self._clients.get(engine)
        try:
            if engine == "docker":
                from llm_sandbox.backends.docker_engine import shared_docker_client

                client = shared_docker_client()
            else:
                from llm_sandbox.backends.podman_engine import shared_podman_client

                client = shared_podman_client()
            client.ping()
        except Exception:  # noqa: BLE001 - an engine that is not up is simply not a source
            return None
        return client

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _export(self, engine: str, client: Any, image: str, folder: Path, config: dict[str, Any]) -> None:
        """Export a never-started container of ``image`` into ``folder`` (made whole, then renamed into place)."""
        logger.info("exporting the filesystem of %s from %s for the bubblewrap backend", image, engine)
        partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.partial-", dir=self.root))
        try:
            (partial / "rootfs").mkdir()
            container = client.containers.create(image, command=["true"], labels=sandbox_labels("rootfs-export"))
            try:
                _extract(container.export(chunk_size=EXPORT_CHUNK), partial / "rootfs")
            finally:
                container.remove(force=True)
            (partial / "config.json").write_text(json.dumps({"image": image, "engine": engine, "config": config}))
            if folder.exists():  # a folder without its rootfs: an export that did not finish before the lock
                shutil.rmtree(folder)
            os.rename(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise


def _extract(chunks: Iterator[bytes], target: Path) -> None:
    """Unpack an exported filesystem with its owners, modes and device nodes (GNU tar as root does all three)."""
    process = subprocess.Popen(
        ["tar", "-x", "--numeric-owner", "--same-permissions", "--same-owner", "-C", str(target), "-f", "-"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
    except BrokenPipeError:
        pass
    finally:
        process.stdin.close()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait()
    if process.returncode != 0:
        raise ContainerError(f"unpacking the exported image failed: {stderr.decode('utf-8', 'replace').strip()}")
