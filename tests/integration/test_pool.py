"""Warm pools on the real engines: each user gets a sandbox indistinguishable from a new one, under load, with every
exhaustion strategy, health replacement, use and lifetime limits, and library-keyed sandboxes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from harness import ABOVE_THE_COMMAND_PATH, Harness, list_containers
from llm_sandbox import ArtifactSandboxSession, SandboxSession
from llm_sandbox.cleanup import sweep
from llm_sandbox.labels import MANAGED_LABEL, OWNER_PID_LABEL, SANDBOX_LABEL
from llm_sandbox.languages.base import USER_PREFIX
from llm_sandbox.pool import (
    ContainerPoolManager,
    ExhaustionStrategy,
    PoolClosedError,
    PoolConfig,
    PooledSandboxSession,
    PoolExhaustedError,
    create_pool_manager,
)

pytestmark = ABOVE_THE_COMMAND_PATH

# A small package from PyPI that no default image carries.
EXTRA = "termcolor==2.4.0"
PIP_EGRESS = (
    "import subprocess, sys\n"
    "r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-cache-dir', '-d', '/tmp/dl',"
    " '--timeout', '5', '--retries', '0', 'six==1.16.0'], capture_output=True, text=True)\n"
    "print('EGRESS', r.returncode)\n"
)


@contextmanager
def pool_of(backend: Harness, **config: Any) -> Iterator[ContainerPoolManager]:
    defaults: dict[str, Any] = {"enable_prewarming": False}
    pool = create_pool_manager(**{"lang": "python", **backend.session_defaults}, config=PoolConfig(**defaults | config))
    try:
        yield pool
    finally:
        pool.close()


def _wait_idle(pool: ContainerPoolManager, count: int) -> None:
    deadline = time.monotonic() + 60
    while pool.get_stats()["state_counts"]["idle"] < count:
        assert time.monotonic() < deadline, pool.get_stats()
        time.sleep(0.05)


def _wait_settled(pool: ContainerPoolManager) -> None:
    """Until the pool has made fresh (or replaced) every sandbox given back."""
    deadline = time.monotonic() + 60
    while True:
        stats = pool.get_stats()
        if not stats["state_counts"]["resetting"] and not stats["being_made"]:
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)


def _snapshot(session: SandboxSession) -> str:
    """What a user can see of the sandbox's state: files in every place the code writes, its processes and its
    environment."""
    return session.run(
        "import os\n"
        "for place in ('.', '/tmp', '/var/tmp', '/run/lock', os.environ.get('HOME', '.')):\n"
        "    print(place, sorted(n for n in os.listdir(place) if not n.startswith('llm-sandbox-run-')))\n"
        "print(sorted(os.environ.items()))\n"
        "mine = [p for p in os.listdir('/proc') if p.isdigit() and os.stat('/proc/' + p).st_uid == os.getuid()]\n"
        "print(sorted(int(p) for p in mine if int(p) != os.getpid()))\n"
    ).stdout


# Fresh for every user ---------------------------------------------------------------------------------------------


def test_user_b_sees_nothing_of_user_a(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1) as pool:
        with SandboxSession(pool=pool) as fresh:
            first = fresh.container_id
            baseline = _snapshot(fresh)
        _wait_settled(pool)
        with SandboxSession(pool=pool) as user_a:
            assert user_a.container_id == first
            user_a.run(
                "import os, subprocess\n"
                "for place in ('.', '/tmp', '/var/tmp', '/run/lock'):\n"
                "    open(os.path.join(place, 'from-a.txt'), 'w').write('secret of A')\n"
                "open(os.path.join(os.environ['HOME'], '.profile'), 'a').write('export FROM_A=1\\n')\n"
                "os.environ['FROM_A'] = '1'\n"
                "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            )
            assert "from-a.txt" in _snapshot(user_a)
        _wait_settled(pool)
        with SandboxSession(pool=pool) as user_b:
            assert user_b.container_id == first  # reset in place, not replaced
            assert _snapshot(user_b) == baseline
        assert pool.get_stats()["resets"] >= 2


@pytest.mark.requires("network_switch")
def test_a_library_user_a_installed_is_not_there_for_user_b(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1) as pool:
        with SandboxSession(pool=pool) as user_a:
            first = user_a.container_id
            user_a.install([EXTRA])
            assert user_a.run("import termcolor; print('A has it')").stdout == "A has it\n"
        _wait_settled(pool)
        with SandboxSession(pool=pool) as user_b:
            # An install changes what only the pool can vouch for: the sandbox was replaced, not reset.
            assert user_b.container_id != first
            assert user_b.run("import termcolor").exit_code != 0
            # And the network is cut, as in any new sandbox.
            egress = user_b.run(PIP_EGRESS, timeout=60).stdout
            assert "EGRESS" in egress and "EGRESS 0" not in egress
        assert pool.get_stats()["replaced"] == 1


def test_a_library_planted_in_the_prefix_means_a_new_sandbox(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1) as pool:
        with SandboxSession(pool=pool) as user_a:
            first = user_a.container_id
            planted = user_a.run(
                f"import os; os.makedirs('{USER_PREFIX}/python', exist_ok=True)\n"
                f"open('{USER_PREFIX}/python/planted.py', 'w').write('print(\"planted by A\")')\n"
                "import importlib, sys; sys.path_importer_cache.clear(); importlib.invalidate_caches()\n"
                "import planted\n"
            )
            assert planted.stdout == "planted by A\n"
        _wait_settled(pool)
        with SandboxSession(pool=pool) as user_b:
            assert user_b.container_id != first
            assert user_b.run("import planted").exit_code != 0


# Keyed by libraries -----------------------------------------------------------------------------------------------


@pytest.mark.requires("network_switch")
def test_a_library_set_the_pool_has_seen_is_ready_without_an_install(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=2) as pool:
        with SandboxSession(pool=pool, libraries=[EXTRA]) as first_user:
            keyed = first_user.container_id
            assert first_user.run("import termcolor; print('ready')").stdout == "ready\n"
        _wait_settled(pool)
        misses = pool.get_stats()["misses"]
        started = time.monotonic()
        with SandboxSession(pool=pool, libraries=[EXTRA]) as second_user:
            opened_in = time.monotonic() - started
            assert second_user.container_id == keyed
            assert second_user.run("import termcolor; print('still ready')").stdout == "still ready\n"
        assert pool.get_stats()["misses"] == misses  # a hit: no sandbox made, nothing installed
        assert opened_in < 5, "the second user waited as long as an install"
        if backend.capabilities().images:
            # The set's sandboxes come from an image prepared with it once: a second one installs nothing either.
            assert len(pool.get_stats()["prepared_images"]) == 1
            with (
                SandboxSession(pool=pool, libraries=[EXTRA]) as one,
                SandboxSession(pool=pool, libraries=[EXTRA]) as two,
            ):
                assert {one.container_id, two.container_id} >= {keyed}
                assert two.run("import termcolor; print('from the image')").stdout == "from the image\n"
                assert one.run("import termcolor; print('from the image')").stdout == "from the image\n"
        with SandboxSession(pool=pool) as plain:
            assert plain.container_id != keyed  # another set, another sandbox
            assert plain.run("import termcolor").exit_code != 0


# Under load and at the limits ---------------------------------------------------------------------------------------


def test_more_threads_than_sandboxes_all_get_their_own_answers(backend: Harness) -> None:
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    with pool_of(backend, max_pool_size=2, acquisition_timeout=120) as pool:

        def user(number: int) -> None:
            try:
                for turn in range(3):
                    with SandboxSession(pool=pool) as session:
                        session.run(f"open('mine.txt', 'w').write('{number}-{turn}')")
                        seen = session.run("import os; print(sorted(os.listdir('.')), open('mine.txt').read())")
                        results.setdefault(number, []).append(seen.stdout)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=user, args=(number,)) for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        for number in range(6):
            assert results[number] == [f"['mine.txt'] {number}-{turn}\n" for turn in range(3)]
        stats = pool.get_stats()
        assert stats["total_size"] <= 2
        assert stats["hits"] + stats["misses"] == 18


def test_fail_fast_refuses_when_every_sandbox_is_busy(backend: Harness) -> None:
    with (
        pool_of(backend, max_pool_size=1, exhaustion_strategy="fail_fast") as pool,
        SandboxSession(pool=pool),
        pytest.raises(PoolExhaustedError, match="max_pool_size"),
    ):
        SandboxSession(pool=pool).open()


def test_fail_fast_waits_for_sandboxes_being_made_or_reset_and_refuses_only_when_all_are_in_use(
    backend: Harness,
) -> None:
    # The reference's own example: acquire at once after creating a pre-warming pool, give it back, take both.
    config = {"max_pool_size": 2, "min_pool_size": 2, "enable_prewarming": True, "exhaustion_strategy": "fail_fast"}
    with pool_of(backend, **config) as pool:
        first = pool.acquire()  # the pre-warmed sandboxes are still being made: not in use, so not exhausted
        pool.release(first)
        held = [pool.acquire(), pool.acquire()]  # one of them is the one still being reset
        with pytest.raises(PoolExhaustedError, match="max_pool_size"):
            pool.acquire()
        for container in held:
            pool.release(container)


def test_wait_times_out_or_gets_the_sandbox_given_back(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1, acquisition_timeout=1.0) as pool:
        holder = SandboxSession(pool=pool).open()
        with pytest.raises(PoolExhaustedError, match="acquisition_timeout"):
            SandboxSession(pool=pool).open()
        threading.Timer(0.5, holder.close).start()
        with SandboxSession(pool=pool) as waited:
            assert waited.run("print('after the wait')").stdout == "after the wait\n"


def test_temporary_makes_an_extra_sandbox_and_removes_it(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1, exhaustion_strategy=ExhaustionStrategy.TEMPORARY) as pool:
        with SandboxSession(pool=pool) as member, SandboxSession(pool=pool) as extra:
            assert extra.container_id != member.container_id
            assert pool.get_stats()["temporary"] == 1
            assert pool.get_stats()["total_size"] == 1
        deadline = time.monotonic() + 30
        while pool.get_stats()["temporary"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


# Health, uses, lifetime, close --------------------------------------------------------------------------------------


@pytest.mark.requires("user_switch")
def test_a_dead_sandbox_is_found_and_replaced(backend: Harness, engine_client: Any) -> None:
    with pool_of(backend, max_pool_size=1, min_pool_size=1, enable_prewarming=True) as pool:
        _wait_idle(pool, 1)
        with SandboxSession(pool=pool) as session:
            first = session.container_id
        _wait_idle(pool, 1)
        engine_client.containers.get(first).kill()
        deadline = time.monotonic() + 15
        while not (removed := pool.check_health()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert removed == [first]
        _wait_idle(pool, 1)
        with SandboxSession(pool=pool) as session:
            assert session.container_id != first
            assert session.run("print('replaced')").stdout == "replaced\n"


def test_uses_and_lifetime_retire_a_sandbox(backend: Harness) -> None:
    with pool_of(backend, max_pool_size=1, max_container_uses=2) as pool:
        ids = []
        for _ in range(3):
            with SandboxSession(pool=pool) as session:
                ids.append(session.container_id)
            _wait_settled(pool)
        assert ids[0] == ids[1] != ids[2]
    with pool_of(backend, max_pool_size=1, max_container_lifetime=1.0) as pool:
        with SandboxSession(pool=pool) as session:
            first = session.container_id
            time.sleep(1.2)
        _wait_settled(pool)
        with SandboxSession(pool=pool) as session:
            assert session.container_id != first


def _pool_containers(engine_client: Any, pool: ContainerPoolManager) -> list[str]:
    mark = f"-pool-{pool.pool_id[:12]}"
    found = list_containers(engine_client, {"label": MANAGED_LABEL})
    return [container.id for container in found if container.labels.get(SANDBOX_LABEL, "").endswith(mark)]


@pytest.mark.requires("user_switch")
def test_close_removes_every_sandbox_at_once(backend: Harness, engine_client: Any) -> None:
    pool = create_pool_manager(
        **{"lang": "python", **backend.session_defaults}, config=PoolConfig(max_pool_size=3, min_pool_size=3)
    )
    _wait_idle(pool, 3)
    busy = PooledSandboxSession(pool).open()
    assert len(_pool_containers(engine_client, pool)) == 3
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 10
    assert _pool_containers(engine_client, pool) == []
    with pytest.raises(PoolClosedError):
        SandboxSession(pool=pool).open()
    busy.close()  # giving back to a closed pool is quiet


POOL_OWNER = (
    "import json, sys, time\n"
    "from llm_sandbox.pool import PoolConfig, create_pool_manager\n"
    "pool = create_pool_manager(**json.loads(sys.argv[1]), config=PoolConfig(max_pool_size=2, min_pool_size=2))\n"
    "while pool.get_stats()['state_counts']['idle'] < 2:\n"
    "    time.sleep(0.05)\n"
    "print('ready', flush=True)\n"
    "time.sleep(1000)\n"
)


@pytest.mark.requires("user_switch", "own_uid", "init")
def test_a_killed_pool_owner_leaves_nothing_the_sweep_cannot_find(backend: Harness, engine_client: Any) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", POOL_OWNER, json.dumps({"lang": "python", **backend.session_defaults})],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline() == b"ready\n"
        mine = {"label": f"{OWNER_PID_LABEL}={owner.pid}"}
        assert len(engine_client.containers.list(filters=mine)) == 2
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    # The helpers' leases end the sandboxes by themselves; what the engine keeps (the disk cap's empty volume
    # names) carries the dead owner's labels, and the sweep removes it.
    deadline = time.monotonic() + 30
    while list_containers(engine_client, mine):
        assert time.monotonic() < deadline, "a pooled sandbox outlived its owner by 30 s"
        time.sleep(0.2)
    sweep(engine_client)
    assert engine_client.volumes.list(filters=mine) == []


@pytest.mark.backends("docker", "podman", "bubblewrap")  # the plotting libraries are in the default Python image
def test_an_artifact_session_on_a_pool_gets_its_plots_and_leaves_none(backend: Harness) -> None:
    draw = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\n"
    with pool_of(backend, max_pool_size=1) as pool:
        with ArtifactSandboxSession(pool=pool) as first:
            result = first.run(draw)
            assert [plot.format.value for plot in result.plots] == ["png"]
            assert base64.b64decode(result.plots[0].content_base64).startswith(b"\x89PNG")
        _wait_settled(pool)
        with ArtifactSandboxSession(pool=pool) as second:
            assert second.run("print('nothing drawn')").plots == []
        _wait_settled(pool)
        time.sleep(2)  # what the waiting interpreter does once readied, it has done by now
        with SandboxSession(pool=pool) as third:  # not even the plotting library's caches in HOME (the workdir)
            assert third.run("import os; print(sorted(os.listdir('.')))").stdout == "[]\n"
