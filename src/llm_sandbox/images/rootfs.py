"""The Debian root filesystem under every image, and the host resources its build uses.

The rootfs is ``debootstrap --variant=minbase`` of :data:`~llm_sandbox.images.IMAGE_SUITE` with
:data:`DEBOOTSTRAP_PACKAGES`, fetched from the first Debian mirror in the host's APT sources
(:func:`parse_debian_mirror`). Before it is imported, :func:`prepare_rootfs` drops APT's caches and installs the
host CA bundle, so that sandboxes trust what the host trusts.

Building the rootfs needs root and the ``debootstrap`` package; its scratch directory lives under ``/var/tmp``
and is removed whatever happens (:func:`scratch_dir`). Builds for one engine are serialised with a lock file in
``/var/tmp`` (:func:`build_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from llm_sandbox.images import IMAGE_SUITE

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
# Preparing the debootstrapped tree: APT caches and the host's CA certificates


def read_ca_bundle(path: Path = HOST_CA_BUNDLE) -> bytes | None:
    """The host CA bundle's bytes, or ``None`` (with a warning) when the host has none."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        log.warning("No CA bundle at %s: the images will trust only Debian's CA certificates", path)
        return None


def prepare_rootfs(root: Path, ca_bundle_path: Path = HOST_CA_BUNDLE) -> None:
    """Drop APT caches from ``root`` and put the host CA bundle where the images expect it."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    bundle = read_ca_bundle(ca_bundle_path)
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
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private directory under :data:`SCRATCH_PARENT`, removed (mounts and all) when the block exits."""
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


__all__ = [
    "APT_SOURCES_DIR",
    "APT_SOURCES_LIST",
    "DEBOOTSTRAP_PACKAGES",
    "DEBOOTSTRAP_VARIANT",
    "DEFAULT_MIRROR",
    "HOST_CA_BUNDLE",
    "IMPORT_CHANGES",
    "ROOTFS_CA_BUNDLE",
    "ROOTFS_LOCAL_CA_DIR",
    "SCRATCH_PARENT",
    "apt_source_files",
    "build_lock",
    "extra_certificates",
    "parse_debian_mirror",
    "pem_certificates",
    "prepare_rootfs",
    "read_ca_bundle",
    "remove_scratch",
    "scratch_dir",
]
