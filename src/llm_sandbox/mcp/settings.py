"""What the MCP server is configured with: one settings object, filled from command-line options and from the
environment variables the reference's server reads (``BACKEND``, ``NAMESPACE``, ``COMMIT_CONTAINER``,
``KEEP_TEMPLATE`` and the ``SANDBOX_*`` container settings), so a configuration written for it keeps working."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from llm_sandbox.config import Network
from llm_sandbox.errors import ValidationError

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})

# The reference passes SANDBOX_NETWORK_MODE to the engine as network_mode; here the session's network option
# decides, so the engine's names are read as what they give the code: a bridge is the network, none is none.
NETWORK_MODES = {
    "none": Network.NONE.value,
    "bridge": Network.FULL.value,
    "default": Network.FULL.value,
    **{mode.value: mode.value for mode in Network},
}


@dataclass(frozen=True)
class ServerSettings:
    """The server's configuration. Sandboxes: ``backend``, ``namespace`` (Kubernetes), ``network``,
    ``runtime_configs`` (engine options), ``commit_container`` (each ``execute_code`` sandbox saved as a new image:
    no pool then). The pool behind ``execute_code``: ``pool_size`` sandboxes at most per language, ``warm``
    languages made ready at start. Sessions: ``max_sessions`` at once, closed after ``session_idle_timeout``
    seconds unused. ``max_file_bytes`` bounds an upload and a download."""

    backend: str = "docker"
    namespace: str = "default"
    network: str = Network.INSTALL_ONLY.value
    runtime_configs: Mapping[str, Any] = field(default_factory=dict)
    commit_container: bool = False
    keep_template: bool = True
    pool_size: int = 4
    warm: Sequence[str] = ("python",)
    max_sessions: int = 8
    session_idle_timeout: float = 600.0
    max_file_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("pool_size", "max_sessions", "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not self.session_idle_timeout > 0:
            raise ValidationError(f"session_idle_timeout must be positive (seconds), not {self.session_idle_timeout!r}")

    def sandbox_options(self) -> dict[str, Any]:
        """The ``SandboxSession`` options every sandbox of the server is made with."""
        options: dict[str, Any] = {"backend": self.backend, "network": self.network}
        if self.backend == "kubernetes":
            options["kube_namespace"] = self.namespace
        if self.runtime_configs:
            options["runtime_configs"] = dict(self.runtime_configs)
        return options


def read_flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValidationError(f"{name} must be one of: {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}; not {value!r}")


def network_from(name: str, value: str) -> str:
    """The session's ``network`` for a ``SANDBOX_NETWORK_MODE`` (or ``--network``) value."""
    mode = NETWORK_MODES.get(value.strip().lower())
    if mode is None:
        raise ValidationError(f"{name} must be one of: {', '.join(NETWORK_MODES)}; not {value!r}")
    return mode


def runtime_configs_from(environment: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The engine options the ``SANDBOX_*`` variables ask for. They are added to the library's hardening, never
    instead of it: one that would weaken it (``SANDBOX_PRIVILEGED=true``) makes every sandbox fail to open,
    naming the ``relax_hardening`` it would need."""
    configs: dict[str, Any] = {}
    memory = _text(environment, "SANDBOX_MEM_LIMIT") or _text(environment, "SANDBOX_MEMORY")
    if memory is not None:
        configs["mem_limit"] = memory
    for name in ("SANDBOX_CPU_COUNT", "SANDBOX_CPUS"):
        cpus = _text(environment, name)
        if cpus is not None:
            configs["nano_cpus"] = _nano_cpus(name, cpus)
            break
    for name, key in (("SANDBOX_READ_ONLY", "read_only"), ("SANDBOX_PRIVILEGED", "privileged")):
        flag = _text(environment, name)
        if flag is not None:
            configs[key] = read_flag(name, flag)
    for name, key in (("SANDBOX_CAP_DROP", "cap_drop"), ("SANDBOX_SECURITY_OPT", "security_opt")):
        items = _text(environment, name)
        if items is not None:
            configs[key] = [item.strip() for item in items.split(",") if item.strip()]
    return configs


def _text(environment: Mapping[str, str], name: str) -> str | None:
    value = environment.get(name, "").strip()
    return value or None


def _nano_cpus(name: str, value: str) -> int:
    try:
        cpus = Decimal(value)
    except InvalidOperation:
        raise ValidationError(f"{name} must be a positive number of CPUs, not {value!r}") from None
    if not cpus > 0:
        raise ValidationError(f"{name} must be a positive number of CPUs, not {value!r}")
    return int(cpus * 1_000_000_000)
