"""Session options: parsed once, validated with messages that name the fix, immutable afterwards."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from llm_sandbox.backends.base import Limits
from llm_sandbox.backends.registry import BACKEND_SPECIFIC_OPTIONS, BackendEntry, accepting, get_backend_entry
from llm_sandbox.errors import UnknownOptionError, ValidationError
from llm_sandbox.hints import did_you_mean
from llm_sandbox.languages.base import Language
from llm_sandbox.languages.registry import get_language
from llm_sandbox.security import SecurityPolicy
from llm_sandbox.sizes import parse_size

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_OUTPUT_LIMIT = 10 * 1024 * 1024
DEFAULT_COPY_LIMIT = 1024**3
DEFAULT_DISK_LIMIT = 2 * 1024**3
DEFAULT_WORKDIR = "/sandbox"
# runtime_configs keys that set a memory or CPU limit: refused on a backend that does not declare it can hold them.
RESOURCE_LIMIT_KEYS = frozenset(
    {
        "mem_limit",
        "memswap_limit",
        "mem_reservation",
        "cpu_count",
        "cpu_period",
        "cpu_quota",
        "cpu_shares",
        "cpuset_cpus",
        "nano_cpus",
        "resources",
    }
)
SANDBOX_USER = "65534:65534"


class Network(str, Enum):
    """Network access for containers the library creates."""

    INSTALL_ONLY = "install-only"  # none for user code; connected only while the library installs packages
    NONE = "none"
    FULL = "full"


# The hardened defaults a caller may take away, each by name through ``relax_hardening`` (never silently, never by
# a runtime_configs key alone), with what each one removes.
RELAXABLE = {
    "capabilities": "capabilities added to the sandbox (runtime_configs cap_add or privileged)",
    "no_new_privileges": "the no-new-privileges flag (setuid programs may raise privileges again)",
    "seccomp": "the library's seccomp filter against new namespaces and foreign system-call ABIs, and the "
    "engine's own seccomp profile when runtime_configs security_opt says seccomp=unconfined",
    "init": "the init process as PID 1",
    "pids_limit": "the limit on the number of processes",
    "file_size_limit": "the limit on the size of one file",
    "disk_limit": "the cap on what the code writes into the sandbox in total (disk_limit)",
}


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET
Timeout = float | None | _Unset


@dataclass(frozen=True)
class SandboxSpec:
    """What defines a sandbox: what it is made from, where, with which limits, network and libraries.

    Two sessions with equal specs could be handed the same (reset) sandbox: ``key()`` is what a pool keys on.
    """

    backend: BackendEntry
    language: Language
    image: str | None
    dockerfile: str | None
    backend_options: Mapping[str, Any]
    workdir: str
    network: Network
    runtime_configs: Mapping[str, Any]
    libraries: tuple[str, ...]
    skip_environment_setup: bool
    limits: Limits = field(default_factory=Limits)
    #: Hardened defaults the caller took away by name (``RELAXABLE``); empty for the full set.
    relaxed: frozenset[str] = frozenset()

    @property
    def code_user(self) -> str:
        """The uid user code runs as in a sandbox the library creates (never root unless the caller says so)."""
        return str(self.runtime_configs.get("user") or SANDBOX_USER)

    def key(self) -> tuple[Any, ...]:
        """A hashable identity of the spec (options that hold objects are compared by their repr)."""
        return (
            self.backend.name,
            self.language.name,
            self.image,
            self.dockerfile,
            repr(sorted(self.backend_options.items())),
            self.workdir,
            self.network,
            repr(sorted(self.runtime_configs.items())),
            self.libraries,
            self.skip_environment_setup,
            self.limits,
            tuple(sorted(self.relaxed)),
        )


@dataclass(frozen=True)
class RunPolicy:
    """What governs each run in a sandbox: time, output and copy limits, streaming, decoding, the code policy."""

    default_timeout: float | None = DEFAULT_TIMEOUT_S
    execution_timeout: float | None = None
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    copy_limit: int = DEFAULT_COPY_LIMIT
    stream: bool = False
    encoding_errors: str = "replace"
    security_policy: SecurityPolicy | None = None

    @property
    def run_timeout(self) -> float | None:
        return self.execution_timeout if self.execution_timeout is not None else self.default_timeout


@dataclass(frozen=True)
class SessionOptions:
    """Everything a session was asked for, checked: the sandbox, the run policy, and how the session gets and
    lets go of its sandbox."""

    sandbox: SandboxSpec
    run: RunPolicy
    container_id: str | None
    client: Any
    session_timeout: float | None
    keep_template: bool
    commit_container: bool
    verbose: bool

    @property
    def language(self) -> Language:
        return self.sandbox.language

    @property
    def workdir(self) -> str:
        return self.sandbox.workdir


def reject_unknown(unknown: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raise for misspelled keyword arguments, with the closest of the ``known`` names."""
    for name in unknown:
        raise UnknownOptionError(
            f"SandboxSession() got an unexpected keyword argument {name!r}{did_you_mean(name, known)}"
        )


def _timeout(name: str, value: Any, default: float | None) -> float | None:
    if value is UNSET:
        return default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationError(f"{name} must be a positive number of seconds or None for no limit, not {value!r}")
    return float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(f"{name} must be a positive whole number of bytes, not {value!r}")
    return value


def _disk_limit(value: Any, *, commit: bool) -> int | None:
    limit = parse_size("disk_limit", value)
    if commit:
        # The cap's tmpfs volumes are not part of the container's layer, so a commit would save none of what the
        # code wrote or installed: a sandbox that is to be committed writes to its layer, uncapped.
        logger.info("commit_container: the sandbox's writes go to its own layer, without the disk_limit cap")
        return None
    return limit


def _network(value: Any) -> Network:
    try:
        return Network(value.value if isinstance(value, Network) else str(value).lower())
    except ValueError:
        names = [member.value for member in Network]
        raise ValidationError(
            f"network must be one of {', '.join(names)}, not {value!r}{did_you_mean(str(value), names)}"
        ) from None


def _relaxed(value: Sequence[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        raise ValidationError(f"relax_hardening must be a list of names, not the string {value!r} (write [{value!r}])")
    for name in value:
        if name not in RELAXABLE:
            raise ValidationError(
                f"relax_hardening: {name!r} is not a hardened default{did_you_mean(str(name), RELAXABLE)}; "
                f"known: {', '.join(RELAXABLE)}"
            )
    relaxed = frozenset(value)
    for name in sorted(relaxed):
        logger.warning("relax_hardening: the sandbox runs without %s", RELAXABLE[name])
    return relaxed


def _libraries(value: Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise ValidationError(f"libraries must be a list of names, not the string {value!r} (write [{value!r}])")
    return tuple(value)


def build_options(raw: dict[str, Any]) -> SessionOptions:
    """Validate the keyword arguments of ``SandboxSession`` (already free of unknown names)."""
    entry = get_backend_entry(raw["backend"])
    for name in sorted(BACKEND_SPECIFIC_OPTIONS - entry.options):
        if raw.get(name) is not None:
            raise UnknownOptionError(
                f"option {name!r} means nothing for the {entry.name} backend; remove it "
                f"(backends that accept it: {_accepting(name)})"
            )
    if raw["dockerfile"] is not None and raw["container_id"] is not None:
        raise ValidationError("dockerfile and container_id cannot be used together: choose one of the two options")
    if raw["dockerfile"] is not None and raw["image"] is not None:
        raise ValidationError("dockerfile and image cannot be used together: choose one of the two options")
    if raw["dockerfile"] is not None and not os.path.isfile(raw["dockerfile"]):
        raise ValidationError(f"dockerfile {raw['dockerfile']!r} is not a file")
    if raw["container_id"] is not None and raw["image"] is not None:
        logger.debug("image %r is ignored: attaching to container %r", raw["image"], raw["container_id"])
    workdir = str(raw["workdir"])
    if not workdir.startswith("/") or "\0" in workdir:
        raise ValidationError(f"workdir must be an absolute path inside the sandbox, not {workdir!r}")
    encoding_errors = str(raw["encoding_errors"])
    if encoding_errors not in ("strict", "replace", "ignore", "backslashreplace", "surrogateescape"):
        raise ValidationError(f"encoding_errors {encoding_errors!r} is not a codec error handler")
    policy = raw["security_policy"]
    if policy is not None and not isinstance(policy, SecurityPolicy):
        raise ValidationError("security_policy must be a SecurityPolicy")
    runtime_configs = entry.validate_runtime_configs(raw["runtime_configs"] or {})
    _refuse_what_the_backend_cannot_honour(entry, raw, runtime_configs)
    backend_options = {name: raw[name] for name in entry.options if name != "dockerfile" and raw.get(name) is not None}
    # Keys that configure the backend itself go to its factory, not into the sandbox's own settings.
    for key in entry.runtime_backend_options & set(runtime_configs):
        backend_options[key] = runtime_configs.pop(key)
    sandbox = SandboxSpec(
        backend=entry,
        language=get_language(raw["lang"]),
        image=None if raw["container_id"] is not None else raw["image"],
        dockerfile=raw["dockerfile"],
        backend_options=backend_options,
        workdir=workdir.rstrip("/") or "/",
        network=_network(raw["network"]),
        runtime_configs=runtime_configs,
        libraries=_libraries(raw["libraries"]),
        skip_environment_setup=bool(raw["skip_environment_setup"]),
        limits=Limits(disk_bytes=_disk_limit(raw["disk_limit"], commit=bool(raw["commit_container"]))),
        relaxed=_relaxed(raw["relax_hardening"]),
    )
    run = RunPolicy(
        default_timeout=_timeout("default_timeout", raw["default_timeout"], DEFAULT_TIMEOUT_S),
        execution_timeout=_timeout("execution_timeout", raw["execution_timeout"], None),
        output_limit=_positive_int("output_limit", raw["output_limit"]),
        copy_limit=_positive_int("copy_limit", raw["copy_limit"]),
        stream=bool(raw["stream"]),
        encoding_errors=encoding_errors,
        security_policy=policy,
    )
    return SessionOptions(
        sandbox=sandbox,
        run=run,
        container_id=raw["container_id"],
        client=raw["client"],
        session_timeout=_timeout("session_timeout", raw["session_timeout"], None),
        keep_template=bool(raw["keep_template"]),
        commit_container=bool(raw["commit_container"]),
        verbose=bool(raw["verbose"]),
    )


def _refuse_what_the_backend_cannot_honour(
    entry: BackendEntry, raw: Mapping[str, Any], configs: Mapping[str, Any]
) -> None:
    """Options that need a capability the backend does not declare: refused, naming the backend and the option."""
    if raw["commit_container"] and not entry.capabilities.commit:
        raise UnknownOptionError(
            f"commit_container means nothing for the {entry.name} backend (it cannot save a sandbox as an image)"
        )
    if raw["container_id"] is not None and not entry.capabilities.attach:
        raise UnknownOptionError(
            f"container_id means nothing for the {entry.name} backend: it cannot attach to a sandbox it did not "
            "create; leave container_id out to get a new sandbox, or use a backend that attaches (docker, podman, "
            "kubernetes)"
        )
    if raw["container_id"] is None and not entry.capabilities.resource_limits:
        limits = sorted(RESOURCE_LIMIT_KEYS & set(configs))
        if limits:
            raise UnknownOptionError(
                f"runtime_configs{limits} cannot be honoured by the {entry.name} backend: it does not declare "
                "resource limits, so the sandbox would run without them; remove the keys, or use a backend that "
                "enforces them"
            )


def pooled_options(options: SessionOptions, pool_spec: SandboxSpec, raw: Mapping[str, Any]) -> SessionOptions:
    """A session on a pool: the sandbox is the pool's (its language, image, backend and limits), the run policy the
    session's. Options that would make another sandbox are refused; ``lang`` may be left out (or be the pool's)."""
    clashes = {
        "container_id": raw.get("container_id") is not None,
        "dockerfile": raw.get("dockerfile") is not None,
        "image": raw.get("image") not in (None, pool_spec.image),
        "commit_container": bool(raw.get("commit_container")),
        "runtime_configs": bool(raw.get("runtime_configs")),
    }
    for name, clash in clashes.items():
        if clash:
            raise ValidationError(
                f"{name} cannot be given to a session on a pool: the pool's sandboxes are made by the pool; "
                "pass it to create_pool_manager() instead"
            )
    pool_language = pool_spec.language.name
    asked = str(raw.get("lang") or "python").lower()
    if asked not in (pool_language, "python"):  # "python" is the default: a session that did not say
        raise ValidationError(
            f"the session asks for {asked!r} but the pool runs {pool_language!r}: leave lang out, or use a pool "
            f"of {asked!r} sandboxes"
        )
    return replace(options, sandbox=pool_spec)


def _accepting(option: str) -> str:
    return ", ".join(accepting(option)) or "none in this version"
