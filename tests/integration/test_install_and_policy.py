"""Library installs and the security policy, on every backend (the contract suite: see tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import (
    ImageNotFoundError,
    InvalidLibraryNameError,
    LibraryInstallationError,
    RestrictedModule,
    SandboxSession,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    SecurityViolationError,
)
from llm_sandbox.images import build_hint

POLICY = SecurityPolicy(
    severity_threshold=SecurityIssueSeverity.LOW,
    patterns=[SecurityPattern(r"\bos\.system\s*\(", "shell out through os.system", SecurityIssueSeverity.HIGH)],
    restricted_modules=[RestrictedModule("socket", "raw network access", SecurityIssueSeverity.MEDIUM)],
)


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python", security_policy=POLICY) as opened:
        yield opened


@pytest.mark.parametrize("name", ["--index-url=http://127.0.0.1:1/simple", "x; rm -rf /", "$(id)", "-e .", "a b", ""])
def test_library_names_that_are_options_or_shell_syntax_are_refused(session: SandboxSession, name: str) -> None:
    with pytest.raises(InvalidLibraryNameError):
        session.install([name])
    with pytest.raises(InvalidLibraryNameError):
        session.run("print(1)", libraries=[name])


def test_failed_install_raises_with_the_package_managers_output(session: SandboxSession) -> None:
    with pytest.raises(LibraryInstallationError) as raised:
        session.install(["llm-sandbox-no-such-package-0a1b2c"])
    assert raised.value.output is not None
    assert "No matching distribution" in raised.value.output.stderr + raised.value.output.stdout
    assert "No matching distribution" in str(raised.value)


def test_policy_violation_raises_and_nothing_runs(session: SandboxSession) -> None:
    with pytest.raises(SecurityViolationError) as raised:
        session.run("open('/sandbox/ran', 'w').close()\nimport os\nos.system('true')")
    assert [item.severity for item in raised.value.violations] == [SecurityIssueSeverity.HIGH]
    with pytest.raises(SecurityViolationError, match="socket"):
        session.run("open('/sandbox/ran', 'w').close()\nimport socket")
    assert session.execute_command("test -e /sandbox/ran; echo $?").stdout == "1\n"


def test_is_safe_evaluates_without_running_or_mutating(session: SandboxSession) -> None:
    before = (list(POLICY.patterns), list(POLICY.restricted_modules))
    safe, violations = session.is_safe("# os.system('x') in a comment\nprint('fine')")
    assert safe
    assert violations == []
    safe, violations = session.is_safe("import socket")
    assert not safe
    assert len(violations) == 1
    assert (list(POLICY.patterns), list(POLICY.restricted_modules)) == before
    assert session.run("print('allowed')").stdout == "allowed\n"


def test_missing_default_image_names_the_build_command(backend: Harness, engine_client: Any, python_image: str) -> None:
    image = engine_client.images.get(python_image)
    image.tag("llm-sandbox/python", "held-by-test")
    engine_client.images.remove(python_image)  # only the tag goes: the image stays under the other one
    try:
        with pytest.raises(ImageNotFoundError) as raised:
            backend.session(lang="python", image=None).open()  # image=None: the library's default image
        assert build_hint("python", backend.engine or "docker") in str(raised.value)
    finally:
        image.tag("llm-sandbox/python", "bookworm")
        engine_client.images.remove("llm-sandbox/python:held-by-test")
