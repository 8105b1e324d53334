"""The Kubernetes client at the library's boundary: the default client, error translation, and the label sweep."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llm_sandbox.errors import ContainerError, SandboxError
from llm_sandbox.labels import MANAGED_LABEL, OWNER_HOST_LABEL, is_orphan

logger = logging.getLogger(__name__)

CONFIG_HINT = "set KUBECONFIG (or write ~/.kube/config), run inside a cluster, or pass client=CoreV1Api(...)"
_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")
_STATUS_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.)*)"')


def default_kube_client() -> Any:
    """A CoreV1Api from the kubeconfig (KUBECONFIG, else ~/.kube/config), else from the in-cluster configuration."""
    from llm_sandbox.backends.sdk import import_sdk

    client: Any = import_sdk("kubernetes.client", extra="k8s")
    config: Any = import_sdk("kubernetes.config", extra="k8s")

    configuration = client.Configuration()
    # The client reads KUBECONFIG once, when it is imported: read it now, so that a changed variable counts.
    config_file = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        config.load_kube_config(config_file=config_file, client_configuration=configuration)
    except (config.ConfigException, OSError) as kube_error:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as error:
            raise ContainerError(
                f"no Kubernetes configuration found (kubeconfig {config_file}: {kube_error}; in-cluster: {error}); "
                + CONFIG_HINT
            ) from error
    return client.CoreV1Api(client.ApiClient(configuration))


def api_status(error: Any) -> tuple[int, str]:
    """(HTTP status, message) of an ApiException, including websocket handshakes that were refused."""
    status = int(getattr(error, "status", 0) or 0)
    body = getattr(error, "body", None)
    if body:
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict) and parsed.get("message"):
                return status, str(parsed["message"])
        except (TypeError, ValueError):
            pass
    reason = str(getattr(error, "reason", "") or error)
    if status == 0 and (match := _HANDSHAKE_STATUS.search(reason)):
        status = int(match.group(1))
    if message := _STATUS_MESSAGE.search(reason):
        return status, message.group(1).encode().decode("unicode_escape", "replace")
    return status, reason


def is_not_found(error: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException

    return isinstance(error, ApiException) and api_status(error)[0] == 404


@contextmanager
def kube_errors(action: str, *, missing: type[SandboxError] = ContainerError) -> Iterator[None]:
    """Re-raise client and transport errors as library errors naming ``action``, the original chained."""
    import urllib3.exceptions
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except SandboxError:
        raise
    except ApiException as error:
        status, message = api_status(error)
        if status == 404:
            raise missing(f"{action}: {message}") from error
        if status in (401, 403):
            hint = "check the kubeconfig's credentials and the RBAC rights on pods and pods/exec"
            if "PodSecurity" in message:
                hint = "the namespace enforces a Pod Security Standard: adjust pod_manifest or the namespace"
            raise ContainerError(f"{action}: {message}; {hint}") from error
        raise ContainerError(f"{action}: {message} (HTTP {status})" if status else f"{action}: {message}") from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ContainerError(f"{action}: cannot reach the Kubernetes API server ({error}); {CONFIG_HINT}") from error


def sweep_pods(client: Any = None, *, namespace: str | None = None, older_than: float | None = None) -> list[str]:
    """Delete pods the library created whose owner process is gone (or older than ``older_than`` seconds).

    Pods are found by the label ``io.llm-sandbox.managed=true``, in ``namespace`` or in every namespace the
    credentials may list. Returns ``namespace/name`` of each deleted pod.
    """
    from llm_sandbox.backends.kube_pod import label_value

    api = client or default_kube_client()
    selector = f"{MANAGED_LABEL}=true"
    removed: list[str] = []
    try:
        with kube_errors("listing the library's pods"):
            if namespace is None:
                pods = api.list_pod_for_all_namespaces(label_selector=selector).items
            else:
                pods = api.list_namespaced_pod(namespace, label_selector=selector).items
        host = socket.gethostname()
        for pod in pods:
            labels = dict(pod.metadata.labels or {})
            if labels.get(OWNER_HOST_LABEL) == label_value(host):
                labels[OWNER_HOST_LABEL] = host  # label values are sanitised: compare like for like
            if not is_orphan(labels, older_than=older_than):
                continue
            where = f"{pod.metadata.namespace}/{pod.metadata.name}"
            logger.info("deleting orphaned sandbox pod %s", where)
            with kube_errors(f"deleting pod {where}"):
                try:
                    api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
                except Exception as error:
                    if not is_not_found(error):
                        raise
            removed.append(where)
    finally:
        if client is None:
            api.api_client.close()
    return removed
