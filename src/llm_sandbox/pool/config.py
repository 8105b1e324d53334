"""How a pool behaves: its size, its timeouts, what it does when every sandbox is in use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from llm_sandbox.errors import ValidationError


class ExhaustionStrategy(str, Enum):
    """What ``acquire`` does when every sandbox of a full pool is in use."""

    FAIL_FAST = "fail_fast"  # raise PoolExhaustedError at once
    WAIT = "wait"  # wait for one to come back, at most acquisition_timeout
    TEMPORARY = "temporary"  # create an extra sandbox outside the pool, removed when it is released


@dataclass(frozen=True)
class PoolConfig:
    """A pool's configuration (every field by keyword; an invalid combination is refused at once).

    ``max_pool_size`` sandboxes at most (busy, idle and being made, every library set together);
    ``min_pool_size`` kept ready for the pool's own libraries (made at start when ``enable_prewarming``);
    ``idle_timeout`` (s) before an idle sandbox above the minimum is removed; ``acquisition_timeout`` (s) a WAIT
    acquire waits at most; ``health_check_interval`` (s) between checks of the idle sandboxes;
    ``max_container_lifetime`` (s) and ``max_container_uses`` after which a sandbox is replaced;
    ``max_library_sets``: how many distinct library sets keep warm sandboxes (the least recently used set's idle
    sandboxes make room for a new set). None means no limit where a limit is optional.
    """

    max_pool_size: int = 10
    min_pool_size: int = 0
    idle_timeout: float | None = 300.0
    acquisition_timeout: float | None = 30.0
    health_check_interval: float = 60.0
    max_container_lifetime: float | None = 3600.0
    max_container_uses: int | None = None
    exhaustion_strategy: ExhaustionStrategy | str = ExhaustionStrategy.WAIT  # a name is made the member
    enable_prewarming: bool = True
    max_library_sets: int = 8

    def __post_init__(self) -> None:
        _whole("max_pool_size", self.max_pool_size, minimum=1)
        _whole("min_pool_size", self.min_pool_size, minimum=0)
        _whole("max_library_sets", self.max_library_sets, minimum=1)
        if self.max_container_uses is not None:
            _whole("max_container_uses", self.max_container_uses, minimum=1)
        if self.min_pool_size > self.max_pool_size:
            raise ValidationError(
                f"min_pool_size ({self.min_pool_size}) cannot exceed max_pool_size ({self.max_pool_size}): "
                "lower min_pool_size or raise max_pool_size"
            )
        for name in ("idle_timeout", "acquisition_timeout", "max_container_lifetime"):
            value = getattr(self, name)
            if value is not None:
                _seconds(name, value)
        _seconds("health_check_interval", self.health_check_interval)
        strategy: Any = self.exhaustion_strategy
        try:
            object.__setattr__(self, "exhaustion_strategy", ExhaustionStrategy(strategy))
        except ValueError:
            names = ", ".join(member.value for member in ExhaustionStrategy)
            raise ValidationError(f"exhaustion_strategy must be one of {names}, not {strategy!r}") from None
        object.__setattr__(self, "enable_prewarming", bool(self.enable_prewarming))


def _whole(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{name} must be a whole number of at least {minimum}, not {value!r}")


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationError(f"{name} must be a positive number of seconds (or None where allowed), not {value!r}")
