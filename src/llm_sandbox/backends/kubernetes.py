"""The Kubernetes backend (the official ``kubernetes`` client): pods, exec over the websocket protocol, files as
tar streamed through exec stdin and stdout.

New pods follow the "restricted" Pod Security Standard (``kube_pod``); a ``pod_manifest`` replaces the default
and its namespace wins for every call (create, read, exec, patch, delete). Existing pods (``container_id`` =
``pod`` or ``pod/container``) are attached when Running, waited for (``runtime_configs['pod_ready_timeout']``,
default 60 s) when Pending, refused when Failed, Succeeded or missing, and never deleted.

Exec cannot choose a user, a working directory or environment variables on Kubernetes: the pod's securityContext
decides the user, and the other two are applied by wrapping argv (``/bin/sh -c 'cd …'``, ``env -- K=V …``).
Network policy belongs to the cluster: the library labels its pods ``io.llm-sandbox.egress=deny|allow`` (and
relabels them around installs with network="install-only") for a NetworkPolicy to enforce (docs/kubernetes.md).
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from llm_sandbox.backends.base import (
    ArchiveStream,
    Backend,
    Command,
    ContainerSpec,
    DuplexStream,
    ExecOutput,
)
from llm_sandbox.backends.kube_client import default_kube_client, is_not_found, kube_errors, sweep_pods
from llm_sandbox.backends.kube_pod import (
    DEFAULT_POD_READY_TIMEOUT_S,
    FATAL_REASONS,
    IMAGE_REASONS,
    PodCheck,
    build_manifest,
    check_pod,
    manifest_namespace,
)
from llm_sandbox.backends.kube_stream import (
    TAR_BLOCKING_FACTOR,
    ExecChannels,
    KubeExecStream,
    TarDownload,
    run_to_end,
)
from llm_sandbox.errors import (
    ContainerError,
    ImageNotFoundError,
    SandboxFileNotFoundError,
    ValidationError,
)
from llm_sandbox.labels import EGRESS_LABEL, SANDBOX_LABEL

__all__ = ["KubernetesBackend", "sweep_pods", "wrap_argv"]

logger = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CD_AND_EXEC = 'cd -- "$1" && shift && exec "$@"'
_MISSING_DIR_EXIT = 44
PUT_ARCHIVE_TIMEOUT_S = 600.0  # tar -x of a whole archive sent on its stdin
STAT_TIMEOUT_S = 30.0
_EXTRACT = (
    'cd -- "$1" 2>/dev/null || { echo "llm_sandbox: no directory $1 in the pod" >&2; exit 44; }; '
    'shift; exec tar -x -f - -p "$@"'
)


def wrap_argv(argv: Sequence[str], *, workdir: str | None, environment: Mapping[str, str] | None) -> list[str]:
    """argv that sets ``environment`` and starts in ``workdir``, which a Kubernetes exec cannot ask for."""
    command = [str(part) for part in argv]
    if environment:
        for name in environment:
            if not _ENV_NAME.fullmatch(name):
                raise ValidationError(f"{name!r} is not a valid environment variable name")
        command = ["env", "--", *(f"{name}={value}" for name, value in environment.items()), *command]
    if workdir:
        command = ["/bin/sh", "-c", _CD_AND_EXEC, "sh", workdir, *command]
    return command


class KubernetesBackend(Backend):
    """One pod (and one container in it) on a Kubernetes cluster."""

    engine_name = "kubernetes"

    def __init__(
        self,
        client: Any | None = None,
        kube_namespace: str | None = None,
        pod_manifest: Mapping[str, Any] | None = None,
        pod_ready_timeout: float | None = None,
    ) -> None:
        self._api = client
        self._own_api = client is None
        self._exec_api: Any = None
        self._exec_lock = threading.Lock()
        from_manifest = manifest_namespace(pod_manifest)
        if from_manifest and kube_namespace and from_manifest != kube_namespace:
            logger.warning(
                "pod_manifest names namespace %r, kube_namespace %r: the manifest's namespace is used for every call",
                from_manifest,
                kube_namespace,
            )
        self.namespace = from_manifest or kube_namespace or "default"
        self._pod_manifest = pod_manifest
        self._ready_timeout = float(pod_ready_timeout or DEFAULT_POD_READY_TIMEOUT_S)
        self._pod: str | None = None
        self._container: str | None = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = default_kube_client()
        return self._api

    @property
    def container_id(self) -> str:
        if self._pod is None:
            raise ContainerError("no pod is bound to this backend yet")
        return self._pod

    @property
    def container_name(self) -> str | None:
        return self._container

    # Lifecycle -----------------------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> None:
        session = spec.labels.get(SANDBOX_LABEL) or uuid.uuid4().hex
        manifest = build_manifest(
            spec, name=f"llm-sandbox-{session[:12]}", namespace=self.namespace, pod_manifest=self._pod_manifest
        )
        with kube_errors(f"creating a pod from {spec.image} in namespace {self.namespace!r}"):
            created = self.api.create_namespaced_pod(self.namespace, manifest)
        self._pod = str(created.metadata.name)
        self._container = str(manifest["spec"]["containers"][0]["name"])
        self.owned = True
        try:
            self._wait_running(created=True)
        except BaseException:
            self.remove()
            raise

    def attach(self, container_id: str) -> None:
        pod, _, container = container_id.partition("/")
        if not pod:
            raise ContainerError(f"{container_id!r} is not a pod name ('pod' or 'pod/container')")
        self._pod, self._container, self.owned = pod, container or None, False
        self._container = self._wait_running(created=False).container

    def _read_pod(self) -> Any:
        where = f"pod {self._pod!r} in namespace {self.namespace!r}"
        with kube_errors(f"reading {where}"):
            try:
                return self.api.read_namespaced_pod(self._pod, self.namespace)
            except Exception as error:
                if is_not_found(error):
                    raise ContainerError(f"{where} does not exist; check the pod name and kube_namespace") from error
                raise

    def _check(self) -> PodCheck:
        try:
            return check_pod(self._read_pod(), self._container)
        except ValidationError as error:
            raise ContainerError(str(error)) from error

    def _wait_running(self, *, created: bool) -> PodCheck:
        """Poll until the pod and the chosen container run; ContainerError when they cannot, or not in time."""
        deadline = time.monotonic() + self._ready_timeout
        delay = 0.05
        while True:
            check = self._check()
            if check.phase == "Running" and check.state == "running":
                return check
            if check.phase in ("Succeeded", "Failed") or check.state == "terminated":
                raise ContainerError(f"{check.describe()}: it cannot run code (a pod that ended stays ended)")
            if check.reason in IMAGE_REASONS and created:
                raise ImageNotFoundError(
                    f"{check.describe()}: the cluster cannot pull the image; load it into the cluster's nodes "
                    "(kind load docker-image IMAGE, or k3s ctr images import; see docs/kubernetes.md)"
                )
            if check.reason in IMAGE_REASONS or check.reason in FATAL_REASONS:
                raise ContainerError(check.describe())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContainerError(
                    f"{check.describe()} after waiting {self._ready_timeout:g} s; raise "
                    "runtime_configs['pod_ready_timeout'] or see "
                    f"`kubectl describe pod {check.name} -n {self.namespace}`"
                )
            logger.debug("waiting for %s", check.describe())
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    def remove(self) -> None:
        if self._pod is None or not self.owned:
            return
        pod, self._pod = self._pod, None
        with kube_errors(f"deleting pod {pod!r} in namespace {self.namespace!r}"):
            try:
                self.api.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=0)
            except Exception as error:
                if not is_not_found(error):
                    raise

    def is_running(self) -> bool:
        if self._pod is None:
            return False
        try:
            check = self._check()
        except ContainerError:
            return False
        return check.phase == "Running" and check.state == "running"

    def close(self) -> None:
        for api, owned in ((self._exec_api, True), (self._api, self._own_api)):
            if api is not None and owned:
                api.api_client.close()
        self._exec_api = None
        if self._own_api:
            self._api = None

    # Exec ----------------------------------------------------------------------------------------------------

    def _open(self, argv: Sequence[str], *, stdin: bool) -> ExecChannels:
        from kubernetes import client
        from kubernetes.stream import stream

        with self._exec_lock, kube_errors(f"starting {argv[0]!r} in pod {self._pod!r}"):
            if self._exec_api is None:
                # stream() swaps the ApiClient's transport while it connects: give it a client of its own, so that
                # API calls on the caller's client in other threads never go through the websocket path.
                self._exec_api = client.CoreV1Api(client.ApiClient(self.api.api_client.configuration))
            connection = stream(
                self._exec_api.connect_get_namespaced_pod_exec,
                self.container_id,
                self.namespace,
                command=list(argv),
                container=self._container,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
            )
        return ExecChannels(connection)

    def exec(self, command: Command) -> ExecOutput:
        if command.user is not None:
            logger.debug("exec user %r: on Kubernetes the pod's securityContext decides the user", command.user)
        argv = wrap_argv(command.argv, workdir=command.workdir, environment=command.environment)
        channels = self._open(argv, stdin=False)
        with kube_errors(f"running {command.describe()} in pod {self._pod!r}"):
            return run_to_end(channels, limit=command.output_limit, timeout=command.timeout, what=command.describe())

    def open_stream(self, command: Command) -> DuplexStream:
        argv = wrap_argv(command.argv, workdir=command.workdir, environment=command.environment)
        return KubeExecStream(self._open(argv, stdin=True))

    # Files ---------------------------------------------------------------------------------------------------

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        argv = ["/bin/sh", "-c", _EXTRACT, "sh", path, *([] if keep_owner else ["--no-same-owner"])]
        channels = self._open(argv, stdin=True)
        with kube_errors(f"copying into {path}"):
            output = run_to_end(
                channels, stdin=data, timeout=PUT_ARCHIVE_TIMEOUT_S, what=f"copying into {path} (tar -x)"
            )
        if output.exit_code == _MISSING_DIR_EXIT:
            raise SandboxFileNotFoundError(f"copying into {path}: no such directory in the pod")
        if output.exit_code != 0:
            detail = output.stderr.decode("utf-8", "replace").strip()
            raise ContainerError(f"copying into {path} failed (exit {output.exit_code}): {detail}")

    def get_archive(self, path: str) -> ArchiveStream:
        parent, name = posixpath.split(posixpath.normpath(path))
        if not name:
            raise ValidationError("copying the whole file system out of a pod is not supported: name a path")
        stat = self.exec(Command(["stat", "-c", "%F|%s", "--", path], timeout=STAT_TIMEOUT_S, output_limit=64 * 1024))
        kind, size = "directory", 0  # without stat (exit 127): sizes are still checked while extracting
        if stat.exit_code == 0:
            kind, _, text = stat.stdout.decode("utf-8", "replace").strip().rpartition("|")
            size = int(text) if text.isdigit() else 0
        elif stat.exit_code != 127:
            detail = stat.stderr.decode("utf-8", "replace").strip()
            if "No such file" in detail:
                raise SandboxFileNotFoundError(f"{path} does not exist in pod {self._pod!r}")
            raise ContainerError(f"cannot read {path} in pod {self._pod!r}: {detail}")
        argv = ["tar", "-c", "-f", "-", "-b", str(TAR_BLOCKING_FACTOR), "-C", parent or "/", "--", name]
        download = TarDownload(lambda: self._open(argv, stdin=False), f"copying {path} out of pod {self._pod!r}")
        return ArchiveStream(chunks=download.chunks(), size=size, is_dir=kind == "directory", close=download.close)

    # Network -------------------------------------------------------------------------------------------------

    def set_network(self, enabled: bool) -> None:
        """Relabel the pod for the cluster's NetworkPolicy; the library cannot switch a pod's network itself."""
        if not self.owned:
            raise ContainerError("the network of an attached pod is its owner's to change")
        patch = [{"op": "add", "path": f"/metadata/labels/{EGRESS_LABEL}", "value": "allow" if enabled else "deny"}]
        with kube_errors(f"labelling pod {self._pod!r} for the network policy"):
            self.api.patch_namespaced_pod(self.container_id, self.namespace, patch)
