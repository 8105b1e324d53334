"""A pool of warm sandboxes, each handed to one user at a time and made fresh before the next.

How a sandbox is made fresh (reset in place, then verified; replaced when it cannot be verified):

- When a user gives a sandbox back, the helper (root, out of the code's reach) kills every process of the code,
  empties what the code's uid owns in the workdir (its home too), the temporary folders and /run/lock, and checks
  by ctime (which the code cannot set back) that nothing in the library prefix changed since the pool prepared
  it: the pool's own libraries are there, and a user who added, changed or removed anything there is caught.
- The sandbox is replaced instead (removed, a new one made in the background) when that check finds a change, when
  anything could not be removed, when the user installed libraries or copied files where only root writes (the
  pool cannot tell what root changed), when the helper or the container is gone, or when the sandbox reached
  ``max_container_uses`` or ``max_container_lifetime``.
- What is not state: each run's environment comes from the host, so nothing a user exported survives; the
  network of a pooled sandbox is cut outside install windows, like any other's.

Pools are keyed by library set: ``acquire(libraries=[...])`` returns a sandbox prepared with the pool's libraries
plus those (installed once, when the sandbox was made), so the next user with the same set pays no install time.
The pool's lock is held only to pick or reserve a slot: sandboxes are made, reset and removed outside it, resets
and removals in the pool's worker threads.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from llm_sandbox.config import SandboxSpec, SessionOptions
from llm_sandbox.errors import PoolClosedError, PoolExhaustedError, PoolHealthCheckError
from llm_sandbox.languages.base import USER_PREFIX
from llm_sandbox.pool.config import ExhaustionStrategy, PoolConfig
from llm_sandbox.providers import NewSandboxes
from llm_sandbox.sandbox import Sandbox

logger = logging.getLogger(__name__)

# What a reset empties besides the workdir and the temporary folder; the library prefix is kept (the pool's own
# libraries live there) and checked instead.
WIPED_FOLDERS = ("/var/tmp", "/run/lock")  # noqa: S108 - folders to empty of the code's files, not to write
KEPT_FOLDERS = (USER_PREFIX,)
CLOSE_WAIT_S = 30.0
WARM_UP_TIMEOUT_S = 30.0

LibrarySet = tuple[str, ...]


class ContainerState(str, Enum):
    """Where a pooled sandbox is in its life."""

    INITIALIZING = "initializing"
    IDLE = "idle"
    BUSY = "busy"
    RESETTING = "resetting"
    UNHEALTHY = "unhealthy"
    REMOVING = "removing"


@dataclass(eq=False)
class PooledContainer:
    """One sandbox of the pool, with what the pool knows of it."""

    sandbox: Sandbox
    provider: NewSandboxes  # what made it, and removes it
    libraries: LibrarySet
    #: The guest's clock when the pool finished preparing it: nothing in the library prefix may change after.
    baseline: float
    temporary: bool = False
    state: ContainerState = ContainerState.INITIALIZING
    created_at: float = field(default_factory=time.monotonic)
    last_used_at: float = field(default_factory=time.monotonic)
    use_count: int = 0

    @property
    def container_id(self) -> str:
        return self.sandbox.container_id


class ContainerPoolManager:
    """Warm sandboxes of one language and spec, handed out by ``acquire`` and taken back by ``release``.

    Use it as a context manager, or call ``close()``: every sandbox of the pool is removed then.
    """

    def __init__(self, options: SessionOptions, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self.options = options
        self.spec: SandboxSpec = options.sandbox
        self.pool_id = uuid.uuid4().hex
        self._cond = threading.Condition()
        self._idle: OrderedDict[LibrarySet, deque[PooledContainer]] = OrderedDict()  # least recently used first
        self._members: set[PooledContainer] = set()  # every sandbox of the pool's size, in whatever state
        self._temporary: set[PooledContainer] = set()
        self._reserved = 0  # slots taken by sandboxes being made
        self._prepared: dict[LibrarySet, str] = {}  # library set -> the image prepared with it
        self._preparing: dict[LibrarySet, threading.Lock] = {}
        self._closed = False
        self._counts = {"hits": 0, "misses": 0, "resets": 0, "replaced": 0, "temporary_made": 0}
        self._workers = ThreadPoolExecutor(
            max_workers=max(2, min(8, self.config.max_pool_size)), thread_name_prefix="llm-sandbox-pool"
        )
        self._stop = threading.Event()
        self._checker = threading.Thread(target=self._check_loop, name="llm-sandbox-pool-health", daemon=True)
        self._checker.start()
        if self.config.enable_prewarming and self.config.min_pool_size:
            self._top_up()

    # Handing out and taking back -------------------------------------------------------------------------------

    @property
    def language(self) -> str:
        return self.spec.language.name

    def acquire(self, libraries: Sequence[str] | None = None) -> PooledContainer:
        """A fresh sandbox with the pool's libraries and ``libraries``; what happens when all are busy follows
        ``exhaustion_strategy``."""
        key = self._key(libraries)
        timeout = self.config.acquisition_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        temporary = False
        evicted: PooledContainer | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosedError()
                ready = self._take_idle(key)
                if ready is not None:
                    self._counts["hits"] += 1
                    return self._hand_out(ready)
                if len(self._members) + self._reserved < self.config.max_pool_size:
                    break
                evicted = self._take_least_recent_idle()
                if evicted is not None:
                    self._members.discard(evicted)
                    break
                strategy = self.config.exhaustion_strategy
                if strategy is ExhaustionStrategy.FAIL_FAST and not self._coming():
                    raise PoolExhaustedError(self.config.max_pool_size)
                if strategy is ExhaustionStrategy.TEMPORARY:
                    temporary = True
                    break
                # WAIT, or FAIL_FAST while a sandbox is still being made or reset: it is not in use, so the pool is
                # not exhausted (the reference's FAIL_FAST fails only when every sandbox is someone's).
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise PoolExhaustedError(self.config.max_pool_size, timeout)
                self._cond.wait(remaining)
            self._counts["misses"] += 1
            if temporary:
                self._counts["temporary_made"] += 1
            else:
                self._reserved += 1
        if evicted is not None:  # another library set's idle sandbox makes room for this one
            self._in_background(self._remove, evicted)
        return self._make_for_user(key, temporary)

    def _coming(self) -> bool:
        """Whether a sandbox that is no user's will soon be free: one being made, pre-warmed or reset."""
        return self._reserved > 0 or any(member.state is not ContainerState.BUSY for member in self._members)

    def release(self, container: PooledContainer) -> None:
        """Take a sandbox back: it is made fresh (or replaced) in the background, then handed out again."""
        with self._cond:
            if container.state is not ContainerState.BUSY:
                return
            container.state = ContainerState.RESETTING
            container.last_used_at = time.monotonic()
            closed = self._closed
        if closed:
            self._remove(container)
        else:
            self._in_background(self._remove if container.temporary else self._recycle, container)

    def _in_background(self, work: Any, container: PooledContainer) -> None:
        try:
            self._workers.submit(work, container)
        except RuntimeError:  # the pool closed meanwhile: its workers are gone, the sandbox goes now
            self._remove(container)

    def close(self) -> None:
        """Remove every sandbox of the pool (busy ones too) and stop its threads; later calls raise
        PoolClosedError."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            everything = [*self._members, *self._temporary]
            self._members.clear()
            self._temporary.clear()
            self._idle.clear()
            self._cond.notify_all()
        self._stop.set()
        removals = [self._workers.submit(self._remove, container) for container in everything]
        wait(removals, timeout=CLOSE_WAIT_S)
        self._workers.shutdown(wait=True, cancel_futures=False)
        self._remove_prepared_images()

    def get_stats(self) -> dict[str, Any]:
        """Sizes, states, library sets (idle sandboxes of each), the temporary sandboxes in use, and counters
        (hits, misses, resets, replaced, temporary_made)."""
        with self._cond:
            states = dict.fromkeys((state.value for state in ContainerState), 0)
            for container in self._members:
                states[container.state.value] += 1
            return {
                "total_size": len(self._members),
                "max_size": self.config.max_pool_size,
                "min_size": self.config.min_pool_size,
                "state_counts": states,
                "being_made": self._reserved,
                "temporary": len(self._temporary),
                "prepared_images": sorted(self._prepared.values()),
                "library_sets": {", ".join(key) or "(the pool's own)": len(queue) for key, queue in self._idle.items()},
                "closed": self._closed,
                **self._counts,
            }

    def __enter__(self) -> ContainerPoolManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Under the lock ----------------------------------------------------------------------------------------------

    def _key(self, libraries: Sequence[str] | None) -> LibrarySet:
        extra = [libraries] if isinstance(libraries, str) else list(libraries or ())
        return tuple(sorted(dict.fromkeys([*self.spec.libraries, *extra])))

    def _take_idle(self, key: LibrarySet) -> PooledContainer | None:
        queue = self._idle.get(key)
        if not queue:
            return None
        self._idle.move_to_end(key)
        return queue.popleft()

    def _take_least_recent_idle(self) -> PooledContainer | None:
        for queue in self._idle.values():
            if queue:
                return queue.popleft()
        return None

    def _hand_out(self, container: PooledContainer) -> PooledContainer:
        container.state = ContainerState.BUSY
        container.use_count += 1
        container.last_used_at = time.monotonic()
        return container

    def _put_idle(self, container: PooledContainer) -> None:
        container.state = ContainerState.IDLE
        queue = self._idle.setdefault(container.libraries, deque())
        queue.append(container)
        self._idle.move_to_end(container.libraries)
        while len(self._idle) > self.config.max_library_sets:
            _key, oldest = self._idle.popitem(last=False)
            for stale in oldest:
                self._members.discard(stale)
                self._in_background(self._remove, stale)
        self._cond.notify()

    # Outside the lock --------------------------------------------------------------------------------------------

    def _make_for_user(self, key: LibrarySet, temporary: bool) -> PooledContainer:
        try:
            container = self._make(key, temporary)
        except BaseException:
            with self._cond:
                if not temporary:
                    self._reserved -= 1
                self._cond.notify()
            raise
        with self._cond:
            if not temporary:
                self._reserved -= 1
                self._cond.notify_all()  # a FAIL_FAST caller may be waiting only because this one was being made
            if self._closed:
                closed = True
            else:
                closed = False
                (self._temporary if temporary else self._members).add(container)
                self._hand_out(container)
        if closed:
            self._remove(container)
            raise PoolClosedError()
        return container

    def _make(self, key: LibrarySet, temporary: bool) -> PooledContainer:
        """A new sandbox for ``key``: created (from the set's prepared image where there is one, else with its
        libraries installed), then reset once, which gives the baseline its library prefix is checked against."""
        spec = self._spec_for(key)
        sandbox_id = f"{uuid.uuid4().hex}-pool-{self.pool_id[:12]}"  # unique first: pods are named by its start
        provider = NewSandboxes(spec, client=self.options.client, sandbox_id=sandbox_id)
        sandbox = provider.acquire()
        try:
            reply = sandbox.runner.reset(WIPED_FOLDERS)  # what the install left in the temporary folders goes
        except Exception as error:
            self._remove_sandbox(provider, sandbox)
            raise PoolHealthCheckError(sandbox.container_id, f"its first reset failed: {error}") from error
        sandbox.changed_by_root = False  # the pool's own install
        self._warm_up(sandbox)
        return PooledContainer(sandbox, provider, key, baseline=reply.now, temporary=temporary)

    def _spec_for(self, key: LibrarySet) -> SandboxSpec:
        """How a sandbox for ``key`` is made. For a set beyond the pool's own libraries on a backend with an image
        store, an image with them installed is prepared once (a sandbox that installs them, saved), so every
        later sandbox of the set starts with them: no install, and a replacement is as quick as a reset."""
        spec = replace(self.spec, libraries=key)
        capabilities = self.spec.backend.capabilities
        if key == self._key(None) or not (capabilities.images and capabilities.commit) or self.spec.dockerfile:
            return spec
        with self._cond:
            prepare_lock = self._preparing.setdefault(key, threading.Lock())
        with prepare_lock:  # one preparation per set; other threads of the set wait for it, not the pool
            image = self._prepared.get(key)
            if image is None:
                image = self._prepared[key] = self._prepare_image(spec)
        return replace(spec, image=image, libraries=(), skip_environment_setup=True)

    def _prepare_image(self, spec: SandboxSpec) -> str:
        # The template writes to its own layer (no disk-cap volumes, which a commit would not keep); the sandboxes
        # made from its image have the cap, and the image's library prefix is copied into theirs.
        template_spec = replace(spec, limits=replace(spec.limits, disk_bytes=None))
        provider = NewSandboxes(template_spec, client=self.options.client, sandbox_id=f"{uuid.uuid4().hex}-pool-prep")
        template = provider.acquire()
        try:
            template.runner.reset(WIPED_FOLDERS)  # what the install left in the temporary folders stays out
            tag = hashlib.sha256("\0".join(spec.libraries).encode()).hexdigest()[:16]
            image = template.commit(f"llm-sandbox-pool/{self.pool_id[:12]}", tag)
        finally:
            self._remove_sandbox(provider, template)
        logger.info("pool: prepared %s with %s", image, ", ".join(spec.libraries))
        return image

    def _remove_prepared_images(self) -> None:
        images, self._prepared = dict(self._prepared), {}
        if not images:
            return
        backend, _prefix = self.spec.backend.build(self.options.client, self.spec.backend_options)
        try:
            for image in images.values():
                try:
                    if backend.images is not None:
                        backend.images.remove_image(image)
                except Exception as error:  # noqa: BLE001 - reported; the image is the pool's, named after it
                    logger.warning("pool: removing the prepared image %s failed: %s", image, error)
        finally:
            backend.close()

    def _recycle(self, container: PooledContainer) -> None:
        reason = self._why_not_reusable(container)
        if reason is None:
            with self._cond:
                if self._closed or container not in self._members:
                    reason = "the pool closed"
                else:
                    self._counts["resets"] += 1
                    self._put_idle(container)
                    return
        logger.info("pool: replacing sandbox %s (%s)", container.container_id[:12], reason)
        with self._cond:
            self._members.discard(container)
            self._counts["replaced"] += 1
            self._cond.notify()
        self._remove(container)
        self._top_up()

    def _why_not_reusable(self, container: PooledContainer) -> str | None:
        """None when the sandbox was reset and verified; else why it must be replaced."""
        sandbox = container.sandbox
        config = self.config
        if sandbox.died:
            return "its container or helper is gone"
        if sandbox.changed_by_root:
            return "its user installed libraries or copied files where only root writes"
        if config.max_container_uses is not None and container.use_count >= config.max_container_uses:
            return f"it was used {container.use_count} times (max_container_uses)"
        if self._too_old(container):
            return "it reached max_container_lifetime"
        try:
            reply = sandbox.runner.reset(WIPED_FOLDERS, keep=KEPT_FOLDERS, since=container.baseline, warm=True)
        except Exception as error:  # noqa: BLE001 - any failure means the sandbox is not known to be fresh
            return f"its reset failed: {error}"
        if reply.changed:
            return f"its library prefix changed ({', '.join(reply.changed[:3])})"
        if reply.left:
            return f"its reset could not remove {', '.join(reply.left[:3])}"
        return None

    def _warm_up(self, sandbox: Sandbox) -> None:
        """A new sandbox has no waiting interpreter yet (for a language that keeps one): an empty run readies it,
        in the background rather than on the first user's first run. (Resets ready a fresh one themselves.)"""
        if not self.spec.language.warm_interpreter:
            return
        try:
            sandbox.runner.run_code("", self.options.run, timeout=WARM_UP_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - the next run is only slower
            logger.debug("pool: warming sandbox %s up failed: %s", sandbox.container_id[:12], error)

    def _too_old(self, container: PooledContainer) -> bool:
        lifetime = self.config.max_container_lifetime
        return lifetime is not None and time.monotonic() - container.created_at >= lifetime

    def _remove(self, container: PooledContainer) -> None:
        with self._cond:
            if container.state is ContainerState.REMOVING:
                return  # removed already (a pool that closed while it was in use)
            container.state = ContainerState.REMOVING
            self._temporary.discard(container)
        self._remove_sandbox(container.provider, container.sandbox)

    @staticmethod
    def _remove_sandbox(provider: NewSandboxes, sandbox: Sandbox) -> None:
        container_id = sandbox.container_id
        try:
            provider.release(sandbox)
        except Exception as error:  # noqa: BLE001 - reported; the sweep finds it by its labels
            logger.warning("pool: removing sandbox %s failed: %s", container_id[:12], error)

    def _top_up(self) -> None:
        """Make sandboxes for the pool's own libraries until ``min_pool_size`` are there (in the background)."""
        with self._cond:
            if self._closed:
                return
            missing = self.config.min_pool_size - len(self._members) - self._reserved
            missing = min(missing, self.config.max_pool_size - len(self._members) - self._reserved)
            self._reserved += max(0, missing)
        for _ in range(max(0, missing)):
            try:
                self._workers.submit(self._prewarm_one)
            except RuntimeError:  # the pool closed meanwhile
                with self._cond:
                    self._reserved -= 1

    def _prewarm_one(self) -> None:
        key = self._key(None)
        try:
            container = self._make(key, temporary=False)
        except Exception as error:  # noqa: BLE001 - logged; the next check tries again
            logger.warning("pool: preparing a sandbox failed: %s", error)
            with self._cond:
                self._reserved -= 1
                self._cond.notify()
            return
        with self._cond:
            self._reserved -= 1
            if not self._closed:
                self._members.add(container)
                self._put_idle(container)
                return
        self._remove(container)

    # Health ------------------------------------------------------------------------------------------------------

    def _check_loop(self) -> None:
        while not self._stop.wait(self.config.health_check_interval):
            try:
                self.check_health()
            except Exception:
                logger.exception("pool: health check failed")

    def check_health(self) -> list[str]:
        """Check every idle sandbox now: remove the dead, the expired and those idle past ``idle_timeout`` (above
        ``min_pool_size``), then make new ones up to the minimum. Returns the removed containers' ids."""
        with self._cond:
            idle = [container for queue in self._idle.values() for container in queue]
            for queue in self._idle.values():
                queue.clear()
            for container in idle:
                container.state = ContainerState.RESETTING
        keep: list[PooledContainer] = []
        removed: list[str] = []
        now = time.monotonic()
        idle_timeout = self.config.idle_timeout
        for container in idle:
            alive = not container.sandbox.died and container.sandbox.is_running()
            stale = idle_timeout is not None and now - container.last_used_at >= idle_timeout
            if not alive or self._too_old(container) or (stale and len(keep) >= self.config.min_pool_size):
                removed.append(container.container_id)
            else:
                keep.append(container)
        with self._cond:
            gone = [container for container in idle if container.container_id in removed]
            for container in gone:
                self._members.discard(container)
            for container in keep:
                if self._closed:
                    gone.append(container)
                elif container in self._members:
                    self._put_idle(container)
        for container in gone:
            self._remove(container)
        self._top_up()
        return removed
