"""The README's examples run as written (in a folder holding the local file they name), on Docker (the default
backend, as printed) and on Podman (the same code with ``backend="podman"`` added to its session)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from harness import Harness

pytestmark = pytest.mark.backends("docker", "podman")

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[str]:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)
    assert len(blocks) == 5, "the README's python examples changed: update this test"
    return blocks


def on_backend(code: str, backend: Harness) -> str:
    """The example as printed on Docker (the default backend); on another, its one session there (or its pool,
    whose sessions follow it)."""
    if backend.name == "docker":
        return code
    sessions = r"\b(SandboxSession|ArtifactSandboxSession|InteractiveSandboxSession)\("
    if "create_pool_manager(" in code:
        sessions = r"\b(create_pool_manager)\("
    changed, count = re.subn(sessions, rf"\1(backend={backend.name!r}, ", code)
    assert count == 1, "the README's example opens more or fewer sessions than one: update this test"
    return changed


@pytest.mark.parametrize("code", readme_examples(), ids=["quick-start", "using-it", "plots", "interactive", "pools"])
def test_readme_example_runs(
    code: str,
    backend: Harness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    exec(compile(on_backend(code, backend), "README.md", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    if "6 * 7" in code:
        assert printed == "0 42\n\n"
    elif "create_pool_manager" in code:
        assert printed == "[]\n"
    elif "InteractiveSandboxSession" in code:
        assert printed == "Out[2]: 5\ninterrupted, state kept: True\n8\n"
    elif "ArtifactSandboxSession" in code:
        assert printed == "total 535\n['sales.csv']\n"
        chart = (tmp_path / "plot_0.png").read_bytes()
        assert chart.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", chart[16:24]) == (640, 480)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["data.csv", "plot_0.png"]
    else:
        assert printed.startswith("stopped; partial output:")
        assert (tmp_path / "results" / "out" / "data.csv").read_text() == "a,b\n1,2\n"
