"""A pool's configuration and a pooled session's options: refused at once, with what to change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.errors import ValidationError
from llm_sandbox.pool import ContainerPoolManager, ExhaustionStrategy, PoolConfig, create_pool_manager


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_pool_size": 0}, "max_pool_size must be a whole number of at least 1"),
        ({"min_pool_size": -1}, "min_pool_size must be a whole number of at least 0"),
        ({"min_pool_size": 3, "max_pool_size": 2}, r"min_pool_size \(3\) cannot exceed max_pool_size \(2\)"),
        ({"idle_timeout": 0}, "idle_timeout must be a positive number of seconds"),
        ({"acquisition_timeout": -1.0}, "acquisition_timeout must be a positive"),
        ({"health_check_interval": None}, "health_check_interval must be a positive"),
        ({"max_container_uses": 0}, "max_container_uses must be a whole number of at least 1"),
        ({"exhaustion_strategy": "queue"}, "exhaustion_strategy must be one of fail_fast, wait, temporary"),
        ({"max_pool_size": True}, "max_pool_size must be a whole number"),
    ],
)
def test_an_invalid_configuration_says_what_to_change(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PoolConfig(**fields)


def test_the_defaults_and_a_strategy_given_by_name() -> None:
    config = PoolConfig(exhaustion_strategy="temporary")
    assert config.exhaustion_strategy is ExhaustionStrategy.TEMPORARY
    assert (config.max_pool_size, config.min_pool_size, config.acquisition_timeout) == (10, 0, 30.0)
    assert PoolConfig().exhaustion_strategy is ExhaustionStrategy.WAIT


@pytest.fixture
def pool() -> Iterator[ContainerPoolManager]:
    # No sandbox is made: nothing is prewarmed and nothing acquired.
    manager = create_pool_manager(lang="javascript", libraries=["lodash"], config=PoolConfig(min_pool_size=0))
    yield manager
    manager.close()


def test_a_pooled_session_takes_the_pools_sandbox_and_its_own_run_options(pool: ContainerPoolManager) -> None:
    session = SandboxSession(pool=pool, default_timeout=5, libraries=["chalk"])
    assert session.options.sandbox is pool.spec
    assert session.options.language.name == "javascript"  # lang left out: the pool's
    assert session.options.run.default_timeout == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lang": "ruby"}, "asks for 'ruby' but the pool runs 'javascript'"),
        ({"image": "other:latest"}, "image cannot be given to a session on a pool"),
        ({"runtime_configs": {"mem_limit": "2g"}}, "runtime_configs cannot be given to a session on a pool"),
        ({"commit_container": True}, "commit_container cannot be given"),
    ],
)
def test_a_pooled_session_refuses_what_would_make_another_sandbox(
    pool: ContainerPoolManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SandboxSession(pool=pool, **options)


@pytest.mark.parametrize("name", ["container_id", "commit_container", "keep_template"])
def test_a_pool_refuses_options_that_mean_nothing_for_it(name: str) -> None:
    options: dict[str, Any] = {name: "abc" if name == "container_id" else True}
    with pytest.raises(ValidationError, match=f"{name} cannot be used with a pool"):
        create_pool_manager(**options)


def test_the_library_set_is_the_pools_own_plus_the_sessions(pool: ContainerPoolManager) -> None:
    assert pool._key(["chalk", "lodash"]) == ("chalk", "lodash")
    assert pool._key(None) == ("lodash",)
    assert pool._key("chalk") == ("chalk", "lodash")
