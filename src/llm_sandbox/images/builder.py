"""Build the default sandbox images locally, without any image registry.

The images form one chain per engine::

    llm-sandbox/rootfs:bookworm   debootstrap --variant=minbase (python3, venv, pip, CA certificates, procps),
            │                     imported with ``<engine> import``
    llm-sandbox/base:bookworm     recipes/common.Dockerfile: host CA trust, /opt/venv (uid 65534), /sandbox
            │
    llm-sandbox/<lang>:bookworm   recipes/<lang>.Dockerfile: the language's toolchain from Debian packages

Each image carries the label ``io.llm-sandbox.recipe=<sha256>``. The rootfs hash covers the debootstrap
arguments (suite, variant, package list; not the mirror, which does not change what is installed), the import
options and the host CA bundle; every other hash covers its recipe text plus its parent's hash. A build skips
an image whose label already matches and rebuilds one whose recipe (or any ancestor) changed.

Engines are driven through their command-line tools with argument lists, never shell strings. Docker runs with
``DOCKER_BUILDKIT=0`` (the classic builder of Docker 20.10: no heredocs, no ``RUN --mount``). Podman builds
natively with ``--runtime runc`` and explicit ulimits (see ENVIRONMENT notes: crun refuses cgroup v1 "hybrid"
hosts and Podman's default ulimits exceed the host's hard limits); Podman stores the images as
``localhost/llm-sandbox/<lang>:bookworm`` and resolves the short name ``llm-sandbox/<lang>:bookworm`` to it.

Building the rootfs needs root and the ``debootstrap`` package; its scratch directory lives under ``/var/tmp``
and is removed whatever happens. Builds for one engine are serialised with a lock file in ``/var/tmp``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from llm_sandbox.errors import ImageBuildError, UnsupportedBackendError
from llm_sandbox.images import (
    BASE_IMAGE,
    BUILD_ENGINES,
    IMAGE_LANGUAGES,
    IMAGE_REPOSITORY,
    IMAGE_SUITE,
    RECIPE_LABEL,
    ROOTFS_IMAGE,
    default_image,
    normalize_language,
)

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
"""Mirror used when the host's APT sources name no Debian mirror for the suite."""

DEBOOTSTRAP_VARIANT = "minbase"
DEBOOTSTRAP_PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-venv",
    "python3-pip",
    "ca-certificates",
    "procps",
)

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""The host's CA bundle; copied into the rootfs so that sandboxes trust what the host trusts."""

ROOTFS_CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
"""Where the host bundle is copied inside the rootfs (``update-ca-certificates`` regenerates it later)."""

ROOTFS_LOCAL_CA_DIR = "usr/local/share/ca-certificates"
"""Where each host certificate that Debian does not ship goes, one per file (``host-ca-<n>.crt``).

One certificate per file, because ``update-ca-certificates`` hooks such as Java's keystore builder read only
the first certificate of a file; certificates Debian's own bundle already holds are left out.
"""

IMPORT_CHANGES: tuple[str, ...] = (
    'CMD ["/bin/bash"]',
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
)
"""Dockerfile instructions applied when the rootfs tarball is imported (an imported image has no config)."""

SCRATCH_PARENT = Path("/var/tmp")  # noqa: S108 - private mkdtemp directories and lock files live here
"""Parent of the temporary rootfs directory and of the build lock files."""

APT_SOURCES_LIST = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")

_MIRROR_SCHEMES = ("http://", "https://", "ftp://", "file:/")
_OUTPUT_TAIL_LINES = 40
_HASH_VERSION = 1

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


# ----------------------------------------------------------------------------------------------------
# Debian mirror


def apt_source_files(sources_list: Path = APT_SOURCES_LIST, sources_dir: Path = APT_SOURCES_DIR) -> list[Path]:
    """The host's APT source files in lookup order: ``*.sources``, then sources.list, then ``*.list``."""
    files: list[Path] = []
    if sources_dir.is_dir():
        files.extend(sorted(sources_dir.glob("*.sources")))
    files.append(sources_list)
    if sources_dir.is_dir():
        files.extend(sorted(sources_dir.glob("*.list")))
    return [path for path in files if path.is_file()]


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each enabled stanza of a deb822 ``.sources`` file."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key: str | None = None
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue  # comments may sit inside a stanza
        if not raw.strip():
            if fields:
                stanzas.append(fields)
            fields, key = {}, None
            continue
        if raw[0] in " \t":
            if key is not None:
                fields[key] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = value.strip()
    for stanza in stanzas:
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        yield (
            stanza.get("types", "").split(),
            stanza.get("uris", "").split(),
            stanza.get("suites", "").split(),
        )


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each ``deb URI suite components`` line of a sources.list file."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop "[arch=amd64 signed-by=...]" option blocks
        words = line.split()
        if len(words) < 3:
            continue
        yield [words[0]], [words[1]], [words[2]]


def parse_debian_mirror(files: Iterable[Path] | None = None, suite: str = IMAGE_SUITE) -> str:
    """The first Debian mirror URI in the host's APT sources serving ``suite``, else :data:`DEFAULT_MIRROR`.

    Both formats are read: deb822 ``.sources`` stanzas (``Types``/``URIs``/``Suites``; ``Enabled: no`` is
    skipped) and one-line ``deb [options] URI suite components`` entries. Only binary (``deb``) entries
    whose suites include ``suite`` exactly count, so security, updates and third-party repositories are
    passed over.
    """
    for path in apt_source_files() if files is None else files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for types, uris, suites in entries:
            if "deb" not in types or suite not in suites:
                continue
            for uri in uris:
                if uri.startswith(_MIRROR_SCHEMES):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


# ----------------------------------------------------------------------------------------------------
# Recipes and their hashes


def recipe_text(name: str) -> str:
    """The text of ``recipes/<name>.Dockerfile`` (``common`` or a language)."""
    resource = resources.files("llm_sandbox.images") / "recipes" / f"{name}.Dockerfile"
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ImageBuildError(f"The recipe {name}.Dockerfile is missing from the installed package") from exc


def _sha256_json(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def rootfs_hash(ca_bundle: bytes | None) -> str:
    """Hash of the rootfs recipe: debootstrap arguments, import changes and the host CA bundle."""
    return _sha256_json(
        {
            "version": _HASH_VERSION,
            "kind": "rootfs",
            "suite": IMAGE_SUITE,
            "variant": DEBOOTSTRAP_VARIANT,
            "include": list(DEBOOTSTRAP_PACKAGES),
            "changes": list(IMPORT_CHANGES),
            "ca_layout": [ROOTFS_CA_BUNDLE, f"{ROOTFS_LOCAL_CA_DIR}/host-ca-<n>.crt (extras only)"],
            "ca_sha256": None if ca_bundle is None else hashlib.sha256(ca_bundle).hexdigest(),
        }
    )


def layer_hash(recipe: str, parent_hash: str) -> str:
    """Hash of a Dockerfile recipe layered on a parent whose hash is ``parent_hash``."""
    return _sha256_json({"version": _HASH_VERSION, "kind": "dockerfile", "recipe": recipe, "parent": parent_hash})


@dataclass(frozen=True)
class ImageStep:
    """One image of the chain: what it is called, what it is built from and the hash its label must carry."""

    name: str
    """``rootfs``, ``base`` or a language."""
    tag: str
    """Unqualified tag, e.g. ``llm-sandbox/python:bookworm``."""
    recipe_hash: str
    parent: str | None
    """Name of the step this one is built ``FROM`` (``None`` for the rootfs)."""
    dockerfile: str | None
    """Recipe text (``None`` for the rootfs, which debootstrap makes)."""
    parent_arg: str | None = None
    """Build argument through which the recipe receives its parent's tag."""


def image_plan(ca_bundle: bytes | None, load_recipe: Callable[[str], str] = recipe_text) -> dict[str, ImageStep]:
    """Every image the builder knows, keyed by name, in build order (rootfs, base, then the languages)."""
    root = ImageStep("rootfs", ROOTFS_IMAGE, rootfs_hash(ca_bundle), None, None)
    common = load_recipe("common")
    base = ImageStep("base", BASE_IMAGE, layer_hash(common, root.recipe_hash), "rootfs", common, "ROOTFS_IMAGE")
    plan = {root.name: root, base.name: base}
    for lang in IMAGE_LANGUAGES:
        text = load_recipe(lang)
        plan[lang] = ImageStep(
            lang, default_image(lang), layer_hash(text, base.recipe_hash), "base", text, "BASE_IMAGE"
        )
    return plan


def read_ca_bundle(path: Path = HOST_CA_BUNDLE) -> bytes | None:
    """The host CA bundle's bytes, or ``None`` (with a warning) when the host has none."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        log.warning("No CA bundle at %s: the images will trust only Debian's CA certificates", path)
        return None


# ----------------------------------------------------------------------------------------------------
# Engines


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


def _run_streaming(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
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
        with _scratch_dir("llm-sandbox-build-") as context:
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
            _run_streaming(argv, f"{self.name} build {tag}", self.env)

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


# ----------------------------------------------------------------------------------------------------
# Scratch directories and locking


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (debootstrap can leave /proc and /sys mounted when it fails)."""
    prefix = str(path)
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if mount_point == prefix or mount_point.startswith(prefix + "/"):
            found.append(mount_point)
    return found


def remove_scratch(path: Path) -> None:
    """Remove a scratch directory, unmounting anything left mounted inside it first; never raises."""
    mounts = sorted(_mounts_under(path), key=len, reverse=True)
    for mount_point in mounts:
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    if _mounts_under(path):
        log.error("Not removing %s: something is still mounted inside it; unmount it and remove it by hand", path)
        return

    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("Could not remove %s completely: %s", path, exc)


@contextlib.contextmanager
def _scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH_PARENT))
    try:
        yield path
    finally:
        remove_scratch(path)


@contextlib.contextmanager
def build_lock(engine: str) -> Iterator[None]:
    """Serialise builds for one engine across processes (several sessions may run setup at once)."""
    path = SCRATCH_PARENT / f"llm-sandbox-images-{engine}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            log.info("Another image build for %s is running; waiting for it to finish", engine)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------
# The builder


class ImageState(str, enum.Enum):
    """How a local image compares with its recipe."""

    PRESENT = "present"
    ABSENT = "absent"
    STALE = "stale"


@dataclass(frozen=True)
class ImageStatus:
    step: ImageStep
    qualified_tag: str
    state: ImageState
    size: int | None


@dataclass(frozen=True)
class BuildOutcome:
    """What a build did to one image: ``built`` or ``up to date``, and how long it took."""

    tag: str
    action: str
    seconds: float


def resolve_languages(names: Iterable[str]) -> list[str]:
    """Normalise language names (``all`` means every language); unknown names raise a ValueError subclass."""
    result: list[str] = []
    for name in names:
        if name.strip().lower() == "all":
            candidates: Iterable[str] = IMAGE_LANGUAGES
        else:
            candidates = [normalize_language(name)]
        for lang in candidates:
            if lang not in result:
                result.append(lang)
    return result


class ImageBuilder:
    """Builds and inspects the image chain for one engine."""

    def __init__(
        self,
        engine: Engine | str = "docker",
        *,
        mirror: str | None = None,
        ca_bundle_path: Path = HOST_CA_BUNDLE,
        load_recipe: Callable[[str], str] = recipe_text,
    ) -> None:
        self.engine: Engine = CliEngine(engine) if isinstance(engine, str) else engine
        self._mirror = mirror
        self._ca_bundle_path = ca_bundle_path
        self._load_recipe = load_recipe

    @property
    def mirror(self) -> str:
        if self._mirror is None:
            self._mirror = parse_debian_mirror()
        return self._mirror

    def plan(self) -> dict[str, ImageStep]:
        return image_plan(read_ca_bundle(self._ca_bundle_path), self._load_recipe)

    def status(self) -> list[ImageStatus]:
        """The state of every image of the chain under this engine."""
        self.engine.check()
        statuses: list[ImageStatus] = []
        for step in self.plan().values():
            info = self.engine.inspect(step.tag)
            if info is None:
                state, size = ImageState.ABSENT, None
            else:
                fresh = info.labels.get(RECIPE_LABEL) == step.recipe_hash
                state, size = (ImageState.PRESENT if fresh else ImageState.STALE), info.size
            statuses.append(ImageStatus(step, self.engine.qualify(step.tag), state, size))
        return statuses

    def build(self, languages: Sequence[str] = ("python",), force: bool = False) -> list[BuildOutcome]:
        """Build ``languages``, and the rootfs and base under them, where missing or stale.

        ``force`` rebuilds every image of the chain, without the engine's build cache.

        Returns one outcome per image of the chain, in build order.
        """
        wanted = resolve_languages(languages)
        self.engine.check()
        plan = self.plan()
        outcomes: list[BuildOutcome] = []
        replaced: list[str] = []
        started = time.monotonic()
        with build_lock(self.engine.name):
            for name in ["rootfs", "base", *wanted]:
                step = plan[name]
                info = self.engine.inspect(step.tag)
                if not force and info is not None and info.labels.get(RECIPE_LABEL) == step.recipe_hash:
                    log.debug("%s is up to date", self.engine.qualify(step.tag))
                    outcomes.append(BuildOutcome(step.tag, "up to date", 0.0))
                    continue
                reason = "forced" if force else ("missing" if info is None else "recipe changed")
                log.info("Building %s (%s)", self.engine.qualify(step.tag), reason)
                step_started = time.monotonic()
                if step.dockerfile is None:
                    self._build_rootfs(step)
                else:
                    self._build_layer(step, plan, no_cache=force)
                seconds = time.monotonic() - step_started
                log.info("Built %s in %.1f s", self.engine.qualify(step.tag), seconds)
                outcomes.append(BuildOutcome(step.tag, "built", seconds))
                if info is not None and info.id:
                    replaced.append(info.id)
            for image_id in reversed(replaced):  # children first, so that their parents become removable
                self.engine.remove_if_untagged(image_id)
        built = sum(1 for outcome in outcomes if outcome.action == "built")
        if built:
            log.info(
                "%d image(s) built, %d up to date, in %.1f s",
                built,
                len(outcomes) - built,
                time.monotonic() - started,
            )
        else:
            log.info("Images up to date: %s", ", ".join(self.engine.qualify(o.tag) for o in outcomes))
        return outcomes

    def _build_layer(self, step: ImageStep, plan: Mapping[str, ImageStep], no_cache: bool) -> None:
        assert step.dockerfile is not None
        assert step.parent is not None
        assert step.parent_arg is not None
        parent_tag = self.engine.qualify(plan[step.parent].tag)
        self.engine.build(
            step.tag,
            step.dockerfile,
            build_args={step.parent_arg: parent_tag},
            labels={RECIPE_LABEL: step.recipe_hash},
            no_cache=no_cache,
        )

    def _build_rootfs(self, step: ImageStep) -> None:
        """debootstrap a minimal Debian into a scratch directory and import it as ``step.tag``."""
        if os.geteuid() != 0:
            raise ImageBuildError(
                "Building the base image runs debootstrap, which needs root: run this command as root "
                "(for example with sudo)"
            )
        debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
        if debootstrap is None:
            raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
        mirror = self.mirror
        env = dict(os.environ)
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        with _scratch_dir("llm-sandbox-rootfs-") as scratch:
            root = scratch / "root"
            argv = [
                debootstrap,
                f"--variant={DEBOOTSTRAP_VARIANT}",
                f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
                IMAGE_SUITE,
                str(root),
                mirror,
            ]
            log.info("Running debootstrap %s from %s (about a minute)", IMAGE_SUITE, mirror)
            started = time.monotonic()
            _run_streaming(argv, "debootstrap", env)
            log.info("debootstrap took %.1f s", time.monotonic() - started)
            self._prepare_rootfs(root)
            started = time.monotonic()
            self.engine.import_rootfs(root, step.tag, [*IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={step.recipe_hash}"])
            log.info("Import took %.1f s", time.monotonic() - started)

    def _prepare_rootfs(self, root: Path) -> None:
        """Drop APT caches and put the host CA bundle where the images expect it."""
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        bundle = read_ca_bundle(self._ca_bundle_path)
        if bundle is None:
            return
        debian_bundle = root / ROOTFS_CA_BUNDLE
        shipped = debian_bundle.read_bytes() if debian_bundle.is_file() else b""
        extras = extra_certificates(bundle, shipped)
        _write_file(debian_bundle, bundle)
        for number, certificate in enumerate(extras, start=1):
            _write_file(root / ROOTFS_LOCAL_CA_DIR / f"host-ca-{number}.crt", certificate)
        log.info(
            "Host CA bundle copied; %d certificate(s) Debian does not ship added as host-ca-<n>.crt",
            len(extras),
        )


def _write_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_bytes(data)
    target.chmod(0o644)


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.*?)-----END CERTIFICATE-----", re.DOTALL)


def pem_certificates(bundle: bytes) -> list[tuple[bytes, bytes]]:
    """The certificates of a PEM bundle as ``(key, pem)``: the key is the base64 body without whitespace."""
    found: list[tuple[bytes, bytes]] = []
    for match in _PEM_CERTIFICATE.finditer(bundle):
        key = b"".join(match.group(1).split())
        found.append((key, match.group(0) + b"\n"))
    return found


def extra_certificates(bundle: bytes, shipped: bytes) -> list[bytes]:
    """PEM certificates of ``bundle`` that ``shipped`` lacks, each once, in bundle order."""
    known = {key for key, _pem in pem_certificates(shipped)}
    extras: list[bytes] = []
    for key, pem in pem_certificates(bundle):
        if key not in known:
            known.add(key)
            extras.append(pem)
    return extras


__all__ = [
    "DEBOOTSTRAP_PACKAGES",
    "DEFAULT_MIRROR",
    "BuildOutcome",
    "CliEngine",
    "Engine",
    "ImageBuilder",
    "ImageInfo",
    "ImageState",
    "ImageStatus",
    "ImageStep",
    "apt_source_files",
    "build_lock",
    "extra_certificates",
    "image_plan",
    "layer_hash",
    "parse_debian_mirror",
    "pem_certificates",
    "read_ca_bundle",
    "recipe_text",
    "remove_scratch",
    "resolve_languages",
    "rootfs_hash",
]
