"""Pod status as the fake API server reports it (read from the backing Docker containers), and label selectors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_sandbox.testing.fake_kube_pods import Backing

_SET_TERM = re.compile(r"\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*")


def _timestamp(docker_time: str) -> str:
    """Docker's RFC 3339 with nanoseconds, as whole seconds (what the API server prints)."""
    return docker_time.split(".", maxsplit=1)[0].rstrip("Z") + "Z"


def container_status(docker_client: Any, backing: Backing) -> tuple[dict[str, Any], str, int | None]:
    """(containerStatus, "waiting" | "running" | "terminated", exit code) of one container."""
    import docker.errors

    status: dict[str, Any] = {
        "name": backing.name,
        "image": backing.spec.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
    }
    state: dict[str, Any]
    if backing.docker_id is None:
        reason, message = backing.waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return status, "waiting", None
    status["containerID"] = f"docker://{backing.docker_id}"
    try:
        inspected = docker_client.api.inspect_container(backing.docker_id)
    except docker.errors.NotFound:
        status["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}
        return status, "terminated", 137
    docker_state = inspected["State"]
    status["imageID"] = str(inspected.get("Image", ""))
    if docker_state.get("Running"):
        state = {"running": {"startedAt": _timestamp(docker_state["StartedAt"])}}
        status.update(ready=True, started=True, state=state)
        return status, "running", None
    if docker_state.get("Status") == "created":
        reason, message = backing.waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return status, "waiting", None
    exit_code = int(docker_state.get("ExitCode", 0))
    state = {
        "terminated": {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else ("OOMKilled" if docker_state.get("OOMKilled") else "Error"),
            "startedAt": _timestamp(docker_state["StartedAt"]),
            "finishedAt": _timestamp(docker_state["FinishedAt"]),
        }
    }
    status["state"] = state
    return status, "terminated", exit_code


def pod_phase(states: list[tuple[str, int | None]]) -> str:
    """The phase of a pod with restartPolicy Never, from its containers' states."""
    kinds = [kind for kind, _ in states]
    if all(kind == "terminated" for kind in kinds):
        return "Succeeded" if all(code == 0 for _, code in states) else "Failed"
    if "waiting" in kinds:
        return "Pending"
    return "Running"


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` match a label selector (=, ==, !=, in, notin, exists, !exists)."""
    for term in _split_terms(selector):
        set_term = _SET_TERM.fullmatch(term)
        if set_term:
            key, operator, values = set_term.groups()
            wanted = {value.strip() for value in values.split(",")}
            if (labels.get(key) in wanted) != (operator == "in") or (operator == "in" and key not in labels):
                return False
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True
