"""Option validation happens at construction, with no engine, and names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_sandbox import (
    LanguageNotSupportedError,
    SandboxBackend,
    SandboxSession,
    UnknownOptionError,
    UnsupportedBackendError,
    ValidationError,
)


def test_misspelled_keyword_is_a_type_error_with_a_hint() -> None:
    with pytest.raises(TypeError, match="did you mean 'lang'"):
        SandboxSession(langauge="python")
    with pytest.raises(UnknownOptionError, match="did you mean 'execution_timeout'"):
        SandboxSession(execution_timout=3)


def test_unknown_runtime_config_key_is_refused_with_a_hint() -> None:
    with pytest.raises(UnknownOptionError, match="did you mean 'mem_limit'"):
        SandboxSession(runtime_configs={"mem_limt": "1g"})


def test_runtime_network_mode_points_to_the_network_option() -> None:
    with pytest.raises(UnknownOptionError, match="network="):
        SandboxSession(runtime_configs={"network_mode": "host"})


def test_dockerfile_with_container_id_names_both(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    with pytest.raises(ValidationError, match="dockerfile and container_id"):
        SandboxSession(dockerfile=str(dockerfile), container_id="abc")


def test_dockerfile_with_image_names_both(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    with pytest.raises(ValidationError, match="dockerfile and image"):
        SandboxSession(dockerfile=str(dockerfile), image="x")


def test_image_is_ignored_with_container_id() -> None:
    session = SandboxSession(container_id="abc", image="ignored")
    assert session.options.sandbox.image is None


def test_unknown_language_lists_the_supported_ones() -> None:
    with pytest.raises(LanguageNotSupportedError, match=r"supported: .*python"):
        SandboxSession(lang="cobol")


def test_language_is_case_insensitive() -> None:
    assert SandboxSession(lang="PYTHON").options.language.name == "python"


def test_backend_accepts_enum_and_string() -> None:
    assert SandboxSession(backend=SandboxBackend.DOCKER).options.sandbox.backend.name == "docker"
    assert SandboxSession(backend="Docker").options.sandbox.backend.name == "docker"
    with pytest.raises(UnsupportedBackendError, match="did you mean 'docker'"):
        SandboxSession(backend="dokcer")


def test_options_meaningless_for_the_backend_are_errors() -> None:
    with pytest.raises(UnknownOptionError, match="kube_namespace"):
        SandboxSession(backend="docker", kube_namespace="team-a")


@pytest.mark.parametrize("value", [0, -1, "10", True])
def test_timeouts_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(ValidationError, match="default_timeout"):
        SandboxSession(default_timeout=value)  # type: ignore[arg-type]


def test_none_timeout_means_no_limit() -> None:
    session = SandboxSession(default_timeout=None)
    assert session.options.run.run_timeout is None
    assert SandboxSession().options.run.run_timeout == 60.0
    assert SandboxSession(execution_timeout=5).options.run.run_timeout == 5.0


def test_network_values_are_checked() -> None:
    with pytest.raises(ValidationError, match="install-only"):
        SandboxSession(network="host")


def test_libraries_must_be_a_list() -> None:
    with pytest.raises(ValidationError, match=r"\['numpy'\]"):
        SandboxSession(libraries="numpy")


def test_workdir_must_be_absolute() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        SandboxSession(workdir="relative/dir")
