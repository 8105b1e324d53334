"""The MCP server's configuration and rules, without an engine: the reference's environment variables,
the network names, who may listen where, paths in a session's sandbox, and which runs get the figure capture."""

from __future__ import annotations

import pytest

from llm_sandbox.errors import ValidationError
from llm_sandbox.mcp.executor import may_draw
from llm_sandbox.mcp.http import check_exposure, is_loopback
from llm_sandbox.mcp.sessions import sandbox_path
from llm_sandbox.mcp.settings import ServerSettings, network_from, runtime_configs_from


def test_the_references_container_variables_become_runtime_configs() -> None:
    configs = runtime_configs_from(
        {
            "SANDBOX_MEMORY": "512m",
            "SANDBOX_CPUS": "1.5",
            "SANDBOX_READ_ONLY": "yes",
            "SANDBOX_CAP_DROP": "NET_RAW, MKNOD",
            "SANDBOX_SECURITY_OPT": "label=disable",
        }
    )
    assert configs == {
        "mem_limit": "512m",
        "nano_cpus": 1_500_000_000,
        "read_only": True,
        "cap_drop": ["NET_RAW", "MKNOD"],
        "security_opt": ["label=disable"],
    }
    assert runtime_configs_from({"SANDBOX_MEM_LIMIT": "1g", "SANDBOX_MEMORY": "2g"}) == {"mem_limit": "1g"}
    assert runtime_configs_from({}) == {}


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"SANDBOX_CPUS": "0"}, "positive number"),
        ({"SANDBOX_CPU_COUNT": "two"}, "positive number"),
        ({"SANDBOX_PRIVILEGED": "maybe"}, "must be one of"),
    ],
)
def test_malformed_variables_are_refused(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        runtime_configs_from(environment)


def test_network_modes_of_the_engine_map_to_the_sessions_network() -> None:
    assert [network_from("x", value) for value in ("none", "bridge", "install-only", "FULL")] == [
        "none",
        "full",
        "install-only",
        "full",
    ]
    with pytest.raises(ValidationError, match="must be one of"):
        network_from("SANDBOX_NETWORK_MODE", "host")


def test_settings_give_every_sandbox_the_same_options() -> None:
    settings = ServerSettings(backend="kubernetes", namespace="sandboxes", runtime_configs={"mem_limit": "1g"})
    assert settings.sandbox_options() == {
        "backend": "kubernetes",
        "network": "install-only",
        "kube_namespace": "sandboxes",
        "runtime_configs": {"mem_limit": "1g"},
    }
    with pytest.raises(ValidationError, match="max_sessions"):
        ServerSettings(max_sessions=0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.8.9.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("my-host", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_needs_a_token_beyond_loopback_and_a_long_one() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "a" * 16)
    with pytest.raises(ValidationError, match="without a bearer token"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(ValidationError, match="at least 16"):
        check_exposure("127.0.0.1", "short")


def test_paths_in_a_session_are_under_the_workdir_unless_absolute() -> None:
    assert sandbox_path("data/in.csv") == "/sandbox/data/in.csv"
    assert sandbox_path("./a/../b.txt") == "/sandbox/b.txt"
    assert sandbox_path("/tmp/x") == "/tmp/x"
    for bad in ("", "   ", "/", "../..", "a\0b"):
        with pytest.raises(ValidationError):
            sandbox_path(bad)


def test_only_code_that_could_draw_is_run_with_the_figure_capture() -> None:
    assert not may_draw("python", "print(sum(range(10)))")
    assert may_draw("python", "import matplotlib.pyplot as plt")
    assert may_draw("python", "import pandas as pd\npd.Series([1, 2]).plot()")
    assert may_draw("python", "import seaborn as sns")
    assert may_draw("r", "x <- c(1, 2)")  # R's base functions draw without naming a library
    assert not may_draw("javascript", "plot()")
