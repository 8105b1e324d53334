"""Container options for the OCI engines: the hardened defaults, and the validated ``runtime_configs`` on top.

``runtime_configs`` takes docker-SDK style keys; unknown keys are an error with a hint, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_sandbox.backends.base import ContainerSpec
from llm_sandbox.errors import UnknownOptionError
from llm_sandbox.hints import did_you_mean

# Keys a caller may set; each is passed to the engine as given and wins over the library's default.
ALLOWED_RUNTIME_KEYS = frozenset(
    {
        "cap_add",
        "cap_drop",
        "cpu_count",
        "cpu_period",
        "cpu_quota",
        "cpu_shares",
        "cpuset_cpus",
        "device_requests",
        "devices",
        "dns",
        "environment",
        "extra_hosts",
        "group_add",
        "hostname",
        "init",
        "labels",
        "mem_limit",
        "mem_reservation",
        "memswap_limit",
        "mounts",
        "nano_cpus",
        "pids_limit",
        "platform",
        "privileged",
        "read_only",
        "runtime",
        "security_opt",
        "shm_size",
        "storage_opt",
        "sysctls",
        "tmpfs",
        "ulimits",
        "user",
        "volumes",
        "working_dir",
    }
)

# Keys with a dedicated session option: naming the option is more helpful than accepting two spellings.
REDIRECTED_KEYS = {
    "network_mode": "the session's network= option ('install-only', 'none' or 'full')",
    "network": "the session's network= option ('install-only', 'none' or 'full')",
    "image": "the session's image= option",
    "command": "nothing: the library runs its own keep-alive command",
    "entrypoint": "nothing: the library runs its own keep-alive command",
    "auto_remove": "nothing: the library removes containers it created",
}


def validate_runtime_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``runtime_configs`` keys; return a copy."""
    for key in configs:
        if key in REDIRECTED_KEYS:
            raise UnknownOptionError(f"runtime_configs[{key!r}] is not accepted: use {REDIRECTED_KEYS[key]}")
        if key not in ALLOWED_RUNTIME_KEYS:
            raise UnknownOptionError(
                f"runtime_configs has an unknown key {key!r}{did_you_mean(key, ALLOWED_RUNTIME_KEYS)}; "
                f"accepted keys: {', '.join(sorted(ALLOWED_RUNTIME_KEYS))}"
            )
    return dict(configs)


def docker_create_options(spec: ContainerSpec) -> dict[str, Any]:
    """``containers.create`` keyword arguments: hardened defaults, then the caller's runtime_configs."""
    limits = spec.limits
    options: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "labels": dict(spec.labels),
        "environment": dict(spec.environment),
        "network_mode": "bridge" if spec.network_enabled else "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "log_config": {"type": "none", "config": {}},
        # The container ends with its keep-alive command; the engine then removes it, so a session whose host
        # process died cannot leave it behind past session_timeout.
        "auto_remove": True,
    }
    if limits.pids is not None:
        options["pids_limit"] = limits.pids
    if limits.memory_bytes is not None:
        options["mem_limit"] = limits.memory_bytes
        options["memswap_limit"] = limits.memory_bytes
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.file_size_bytes is not None:
        options["ulimits"] = [{"Name": "fsize", "Soft": limits.file_size_bytes, "Hard": limits.file_size_bytes}]
    for key, value in spec.runtime_configs.items():
        if key in ("environment", "labels"):
            options[key] = {**options[key], **dict(value)}
        elif key != "user":  # the code user is applied per exec by the session, PID 1 stays root
            options[key] = value
    return options


# Options the podman SDK silently drops or reads differently are translated here, so nothing is lost on the way.
# RLIMIT_NPROC counts every process of the uid on the host, across sandboxes: keep it far above the per-sandbox
# pids limit, or a fork bomb in one sandbox would starve the others (the pids cgroup is what bounds each one),
# and under the Podman service's own hard limit (32768 where it was measured), which a container cannot exceed.
PODMAN_DEFAULT_ULIMITS = {"nofile": 1024, "nproc": 16384}


def podman_create_options(spec: ContainerSpec) -> dict[str, Any]:
    """``containers.create`` keyword arguments for the podman SDK (the same defaults as Docker)."""
    options = docker_create_options(spec)
    options["network_mode"] = "bridge"  # the engine's default network; cut off before start unless allowed
    # The podman SDK reads security_opt as SELinux options: say no-new-privileges its own way, refuse the rest.
    for opt in options.pop("security_opt"):
        if not opt.startswith("no-new-privileges"):
            raise UnknownOptionError(f"security_opt {opt!r} is not supported on Podman by the podman SDK")
    options["no_new_privileges"] = True
    if options["log_config"] == {"type": "none", "config": {}}:
        options["log_config"] = {"Type": "none"}  # the podman SDK reads the capitalised keys only
    nano_cpus = options.pop("nano_cpus", None)  # dropped without a word by the SDK: use the CFS quota instead
    if nano_cpus is not None:
        options.setdefault("cpu_period", 100_000)
        options.setdefault("cpu_quota", int(nano_cpus * options["cpu_period"] / 1e9))
    # An explicit ulimit list replaces Podman's defaults, whose nofile may exceed the host's hard limit.
    ulimits = {_ulimit_name(item): item for item in options.get("ulimits", [])}
    for name, value in PODMAN_DEFAULT_ULIMITS.items():
        ulimits.setdefault(name, {"Name": name, "Soft": value, "Hard": value})
    options["ulimits"] = [
        {"Name": name, "Soft": _field(item, "Soft"), "Hard": _field(item, "Hard")} for name, item in ulimits.items()
    ]
    return options


RLIM_INFINITY = 2**64 - 1  # Podman takes limits as uint64: Docker's -1 ("unlimited") is spelled this way


def _field(item: Mapping[str, Any], key: str) -> Any:
    value = item.get(key, item.get(key.lower()))
    return RLIM_INFINITY if value == -1 else value


def _ulimit_name(item: Mapping[str, Any]) -> str:
    return str(_field(item, "Name"))
