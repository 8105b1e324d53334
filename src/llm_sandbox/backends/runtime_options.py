"""Container options for the OCI engines: the hardened defaults, and the validated ``runtime_configs`` on top.

``runtime_configs`` takes docker-SDK style keys; unknown keys are an error with a hint, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_sandbox.backends.base import ContainerSpec
from llm_sandbox.backends.disk import disk_volumes, volume_bindings
from llm_sandbox.errors import UnknownOptionError
from llm_sandbox.hints import did_you_mean
from llm_sandbox.sizes import parse_size

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


# The capabilities root keeps in a created container, for the guest helper alone (the code never has any): it runs
# as root and starts every process of the code under the code's uid (SETUID, SETGID: setresuid, setresgid and
# setgroups; SETPCAP: empty the bounding set first, so the code's is empty too), and ends the code's processes,
# which run under another uid (KILL). Nothing else: no DAC_OVERRIDE, CHOWN or FOWNER, so root's file work is
# checked like anyone's (the helper does the code's file work as the code's effective uid).
HELPER_CAPABILITIES: tuple[str, ...] = ("SETUID", "SETGID", "KILL", "SETPCAP")

# runtime_configs keys that weaken a hardened default when they say so, and the relax_hardening name that allows it.
NO_NEW_PRIVILEGES = "no-new-privileges"


def docker_create_options(spec: ContainerSpec, engine: str = "docker") -> dict[str, Any]:
    """``containers.create`` keyword arguments: hardened defaults, then the caller's runtime_configs merged in.

    The caller adds to the hardening, never takes from it silently: security options and dropped capabilities are
    added to the defaults, and a key that would weaken one (cap_add, privileged, no-new-privileges off, an
    unconfined seccomp profile, no init, no process or file-size limit) is refused unless ``relax_hardening``
    names that default.
    """
    limits = spec.limits
    relaxed = spec.relaxed
    options: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "labels": dict(spec.labels),
        "environment": dict(spec.environment),
        "network_mode": "bridge" if spec.network_enabled else "none",
        "cap_drop": [] if "capabilities" in relaxed else ["ALL"],
        "cap_add": list(HELPER_CAPABILITIES),
        "security_opt": [] if "no_new_privileges" in relaxed else [NO_NEW_PRIVILEGES],
        "init": "init" not in relaxed,
        "log_config": {"type": "none", "config": {}},
        # The container ends with its keep-alive command; the engine then removes it, so a session whose host
        # process died cannot leave it behind past session_timeout.
        "auto_remove": True,
    }
    if limits.pids is not None and "pids_limit" not in relaxed:
        options["pids_limit"] = limits.pids
    if limits.memory_bytes is not None:
        options["mem_limit"] = limits.memory_bytes
        options["memswap_limit"] = limits.memory_bytes
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    if limits.file_size_bytes is not None and "file_size_limit" not in relaxed:
        options["ulimits"] = [{"Name": "fsize", "Soft": limits.file_size_bytes, "Hard": limits.file_size_bytes}]
    for key, value in spec.runtime_configs.items():
        _merge(options, key, value, relaxed)
    _add_disk_cap(options, spec, engine)
    return options


def _add_disk_cap(options: dict[str, Any], spec: ContainerSpec, engine: str) -> None:
    """Mount the disk cap's volumes, and raise the memory limit by the cap: their pages are charged to it."""
    volumes = disk_volumes(spec, engine=engine)
    if not volumes or spec.disk is None:
        return
    options["volumes"] = volume_bindings(volumes, options.get("volumes"))
    for key in ("mem_limit", "memswap_limit"):
        value = options.get(key)
        if value is not None and value != -1:
            options[key] = parse_size(f"runtime_configs[{key!r}]", value) + spec.disk.limit


def _merge(options: dict[str, Any], key: str, value: Any, relaxed: frozenset[str]) -> None:
    """One runtime_configs key onto the hardened options: added to them, or refused where it would weaken one."""
    if key in ("environment", "labels"):
        options[key] = {**options[key], **dict(value)}
    elif key == "user":
        pass  # the code user is applied per exec by the session; PID 1 stays root
    elif key == "cap_drop":
        options["cap_drop"] = list(dict.fromkeys([*options["cap_drop"], *value]))
    elif key == "cap_add" or (key == "privileged" and value):
        _require(relaxed, "capabilities", f"runtime_configs[{key!r}]")
        options[key] = list(dict.fromkeys([*options["cap_add"], *value])) if key == "cap_add" else value
    elif key == "security_opt":
        for item in value:
            _add_security_opt(options, str(item), relaxed)
    elif key == "init" and not value:
        _require(relaxed, "init", "runtime_configs['init']=False")
        options["init"] = False
    elif key == "pids_limit" and (value is None or int(value) <= 0):
        _require(relaxed, "pids_limit", f"runtime_configs['pids_limit']={value!r}")
        options.pop("pids_limit", None)
    elif key == "ulimits":
        merged = {_ulimit_name(item): item for item in options.get("ulimits", [])}
        for item in value:
            name = _ulimit_name(item)
            if name == "fsize" and _field(item, "Hard") in (-1, RLIM_INFINITY):
                _require(relaxed, "file_size_limit", "an unlimited fsize ulimit")
            merged[name] = item
        options["ulimits"] = list(merged.values())
    else:
        options[key] = value


def _add_security_opt(options: dict[str, Any], item: str, relaxed: frozenset[str]) -> None:
    name, _, setting = item.replace(":", "=", 1).partition("=")
    if name == NO_NEW_PRIVILEGES:
        if setting.lower() in ("", "true"):
            return  # the default already
        _require(relaxed, "no_new_privileges", f"security_opt {item!r}")
        options["security_opt"] = [opt for opt in options["security_opt"] if opt != NO_NEW_PRIVILEGES]
        return
    if name == "seccomp" and setting == "unconfined":
        _require(relaxed, "seccomp", f"security_opt {item!r}")
    options["security_opt"] = [*options["security_opt"], item]


def _require(relaxed: frozenset[str], name: str, what: str) -> None:
    if name not in relaxed:
        raise UnknownOptionError(
            f"{what} would take away a hardened default; to do so on purpose, also pass relax_hardening=[{name!r}]"
        )


# Options the podman SDK silently drops or reads differently are translated here, so nothing is lost on the way.
# RLIMIT_NPROC counts every process of the uid on the host, across sandboxes: keep it far above the per-sandbox
# pids limit, or a fork bomb in one sandbox would starve the others (the pids cgroup is what bounds each one),
# and under the Podman service's own hard limit (32768 where it was measured), which a container cannot exceed.
PODMAN_DEFAULT_ULIMITS = {"nofile": 1024, "nproc": 16384}


def podman_create_options(spec: ContainerSpec) -> dict[str, Any]:
    """``containers.create`` keyword arguments for the podman SDK (the same defaults as Docker)."""
    options = docker_create_options(spec, engine="podman")
    options["network_mode"] = "bridge"  # the engine's default network; cut off before start unless allowed
    # The podman SDK reads security_opt as SELinux options: say no-new-privileges its own way, refuse the rest.
    security_opt = options.pop("security_opt")
    for opt in security_opt:
        if opt != NO_NEW_PRIVILEGES:
            raise UnknownOptionError(f"security_opt {opt!r} is not supported on Podman by the podman SDK")
    options["no_new_privileges"] = NO_NEW_PRIVILEGES in security_opt
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
