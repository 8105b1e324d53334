"""Namespaces and pods of the fake API server, each container backed by a real Docker container
(``fake_kube_node`` turns a container spec into Docker options, as a kubelet would).

Phases follow the containers: Pending until every container has started (the annotation
``fake.llm-sandbox.io/pending-seconds`` holds a pod in Pending that long first; a missing image leaves it Pending
with ``ErrImagePull``), Running while one runs, then Succeeded or Failed by the exit codes (no restarts).
The cluster behaves as if a NetworkPolicy denied egress to pods carrying the ``deny_egress`` label: those
containers have no network, and relabelling a pod switches it, as a CNI would.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from llm_sandbox.testing.fake_kube_admission import ApiError, admit, label_changes, validate_pod
from llm_sandbox.testing.fake_kube_node import BACKING_LABEL, ContainerConfigError, ImageMissingError, docker_options
from llm_sandbox.testing.fake_kube_status import container_status, pod_phase, selector_matches

logger = logging.getLogger(__name__)

PENDING_ANNOTATION = "fake.llm-sandbox.io/pending-seconds"


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Backing:
    """One container of a pod and the Docker container behind it (None until it is created)."""

    name: str
    spec: dict[str, Any]
    docker_id: str | None = None
    waiting: tuple[str, str] = ("ContainerCreating", "")


@dataclass
class FakePod:
    body: dict[str, Any]
    containers: list[Backing]
    start_at: float
    deleted: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])


class PodStore:
    """Namespaces and pods of one fake cluster."""

    def __init__(self, docker_client: Any, server_id: str, deny_egress: tuple[str, str] | None) -> None:
        self._docker = docker_client
        self._server_id = server_id
        self._deny_egress = deny_egress
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], FakePod] = {}
        self._namespaces: dict[str, dict[str, Any]] = {}
        self._version = 0
        self._starters: list[threading.Thread] = []
        self.create_namespace({"metadata": {"name": "default"}})

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    # Namespaces ----------------------------------------------------------------------------------------------

    def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str((body.get("metadata") or {}).get("name") or "")
        with self._lock:
            if name in self._namespaces:
                raise ApiError(409, "AlreadyExists", f'namespaces "{name}" already exists')
            metadata = {
                **copy.deepcopy(body.get("metadata") or {}),
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now_rfc3339(),
                "resourceVersion": self._next_version(),
            }
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata, "status": {"phase": "Active"}}
            self._namespaces[name] = namespace
            return copy.deepcopy(namespace)

    def get_namespace(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._namespaces:
                raise ApiError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})
            return copy.deepcopy(self._namespaces[name])

    # Pods ----------------------------------------------------------------------------------------------------

    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        ns_object = self.get_namespace(namespace)
        body = copy.deepcopy(body)
        metadata = body.setdefault("metadata", {})
        if metadata.get("namespace") not in (None, namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        name = metadata.get("name") or (metadata.get("generateName") or "") + uuid.uuid4().hex[:5]
        validate_pod(body, str(name))
        admit(ns_object, body, str(name))
        with self._lock:
            if (namespace, name) in self._pods:
                raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists', {"name": name, "kind": "pods"})
            metadata.update(
                name=name,
                namespace=namespace,
                uid=str(uuid.uuid4()),
                creationTimestamp=now_rfc3339(),
                resourceVersion=self._next_version(),
            )
            body.update(apiVersion="v1", kind="Pod")
            body["spec"].setdefault("restartPolicy", "Always")
            body["spec"]["nodeName"] = "fake-node"
            delay = float((metadata.get("annotations") or {}).get(PENDING_ANNOTATION, 0))
            containers = [Backing(str(spec["name"]), spec) for spec in body["spec"]["containers"]]
            pod = FakePod(body, containers, time.monotonic() + delay)
            self._pods[(namespace, name)] = pod
            starter = threading.Thread(target=self._start, args=(pod,), name=f"fake-kube-start-{name}", daemon=True)
            self._starters.append(starter)
        starter.start()
        return self._render(pod)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._render(self._find(namespace, name))

    def list_pods(self, namespace: str | None, selector: str) -> dict[str, Any]:
        with self._lock:
            pods = [pod for (ns, _), pod in self._pods.items() if namespace is None or ns == namespace]
        items = [
            self._render(pod) for pod in pods if selector_matches(selector, pod.body["metadata"].get("labels") or {})
        ]
        return {
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            pod = self._find(namespace, name)
            pod.deleted.set()
            del self._pods[(namespace, name)]
        rendered = self._render(pod)
        rendered["metadata"]["deletionTimestamp"] = now_rfc3339()
        self._remove_backing(pod)
        return rendered

    def patch_pod(self, namespace: str, name: str, patch: Any, content_type: str) -> dict[str, Any]:
        """A JSON patch (add / replace / remove) or a merge patch, of metadata labels and annotations only."""
        changes = label_changes(patch, content_type)
        with self._lock:
            pod = self._find(namespace, name)
            was_denied = self._egress_denied(pod)
            for (key, item), value in changes.items():
                current = pod.body["metadata"].setdefault(key, {})
                if value is None:
                    current.pop(item, None)
                else:
                    current[item] = str(value)
            pod.body["metadata"]["resourceVersion"] = self._next_version()
            if self._egress_denied(pod) != was_denied:
                self._switch_network(pod, allowed=was_denied)
        return self._render(pod)

    def exec_target(self, namespace: str, name: str, container: str | None) -> str:
        """The Docker id to exec in, or the error a real API server gives for that request."""
        pod = self._find(namespace, name)
        names = [backing.name for backing in pod.containers]
        if container is None:
            if len(names) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        backing = next((item for item in pod.containers if item.name == container), None)
        if backing is None:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        state = container_status(self._docker, backing)[1]
        if backing.docker_id is None or state != "running":
            raise ApiError(400, "BadRequest", f'unable to upgrade connection: container not found ("{container}")')
        return backing.docker_id

    def shutdown(self) -> None:
        """Remove every pod and every backing container of this server."""
        with self._lock:
            pods = list(self._pods.values())
            self._pods.clear()
            starters = list(self._starters)
        for pod in pods:
            pod.deleted.set()
        for starter in starters:
            starter.join(timeout=30)
        for pod in pods:
            self._remove_backing(pod)
        for container in self._docker.containers.list(
            all=True, filters={"label": f"{BACKING_LABEL}={self._server_id}"}
        ):
            container.remove(force=True, v=True)

    # Internals -----------------------------------------------------------------------------------------------

    def _find(self, namespace: str, name: str) -> FakePod:
        with self._lock:
            pod = self._pods.get((namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        return pod

    def _render(self, pod: FakePod) -> dict[str, Any]:
        with self._lock:
            body = copy.deepcopy(pod.body)
        statuses = []
        states = []
        for backing in pod.containers:
            status, state, exit_code = container_status(self._docker, backing)
            statuses.append(status)
            states.append((state, exit_code))
        phase = pod_phase(states)
        ready = "True" if phase == "Running" and all(state == "running" for state, _ in states) else "False"
        body["status"] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "startTime": body["metadata"]["creationTimestamp"],
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
            "containerStatuses": statuses,
        }
        return body

    def _egress_denied(self, pod: FakePod) -> bool:
        if self._deny_egress is None:
            return False
        key, value = self._deny_egress
        return bool((pod.body["metadata"].get("labels") or {}).get(key) == value)

    def _switch_network(self, pod: FakePod, *, allowed: bool) -> None:
        detach, attach = ("none", "bridge") if allowed else ("bridge", "none")
        for backing in pod.containers:
            if backing.docker_id is not None:
                self._docker.api.disconnect_container_from_network(backing.docker_id, detach)
                self._docker.api.connect_container_to_network(backing.docker_id, attach)

    def _start(self, pod: FakePod) -> None:
        """Wait out the Pending delay, then create and start each container, as a kubelet would."""
        import docker.errors

        if pod.deleted.wait(max(0.0, pod.start_at - time.monotonic())):
            return
        for backing in pod.containers:
            network = "none" if self._egress_denied(pod) else "bridge"
            try:
                options = docker_options(
                    self._docker, pod.body, backing.spec, server_id=self._server_id, network_mode=network
                )
                container = self._docker.containers.create(**options)
            except ImageMissingError as error:
                backing.waiting = ("ErrImagePull", str(error))
                return
            except (ContainerConfigError, ValueError, docker.errors.APIError) as error:
                backing.waiting = ("CreateContainerConfigError", str(error))
                return
            with self._lock:
                backing.docker_id = container.id
                gone = pod.deleted.is_set()
            if gone:
                container.remove(force=True, v=True)
                return
            try:
                container.start()
            except docker.errors.APIError as error:
                backing.waiting = ("RunContainerError", str(error))
                return

    def _remove_backing(self, pod: FakePod) -> None:
        import docker.errors

        for backing in pod.containers:
            if backing.docker_id is not None:
                try:
                    self._docker.api.remove_container(backing.docker_id, force=True, v=True)
                except docker.errors.NotFound:
                    pass
