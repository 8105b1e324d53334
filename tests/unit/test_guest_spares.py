"""The recipe of a spare process, any language: matching a plain run and what the spare is handed. (A guest that
serves runs from spares: test_guest_end_to_end.)"""

from __future__ import annotations

from pathlib import Path

from llm_sandbox.guest.warm import HAND_LIMIT, handoff, run_path, spare_recipe

RUN = ["cat", "{file}"]
STUB = "read path <&3; exec cat $path"


def test_a_plain_run_of_the_recipe_gives_its_file() -> None:
    recipe = spare_recipe(["/bin/sh", "-c", STUB], ["node", "{file}"])
    assert run_path(["node", "/tmp/run-1/main.js"], recipe) == "/tmp/run-1/main.js"
    assert run_path(["nodejs", "/tmp/run-1/main.js"], recipe) is None
    assert run_path(["node", "--inspect", "/tmp/run-1/main.js"], recipe) is None
    assert run_path(["/usr/bin/env", "X=1", "node", "/tmp/main.js"], recipe) is None


def test_a_file_path_that_is_not_plain_runs_cold() -> None:
    recipe = spare_recipe(["/bin/sh", "-c", STUB], RUN)
    for path in ("/tmp/a b.txt", "/tmp/a'b.txt", "/tmp/a\nb.txt", ""):
        assert run_path(["cat", path], recipe) is None


def test_the_hand_over_names_the_file_or_carries_its_source(tmp_path: Path) -> None:
    path = tmp_path / "main.R"
    path.write_bytes(b"cat(1)\n")
    assert handoff(spare_recipe(["x"], RUN), str(path)) == str(path).encode() + b"\n"
    carried = spare_recipe(["x"], RUN, hand="print('{file}')\n{source}")
    assert handoff(carried, str(path)) == f"print('{path}')\n".encode() + b"cat(1)\n"
    path.write_bytes(b"#" * HAND_LIMIT)  # with the line in front, more than one write into the pipe holds
    assert handoff(carried, str(path)) is None
    assert handoff(carried, str(tmp_path / "missing.R")) is None
