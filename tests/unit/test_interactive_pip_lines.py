"""The ``%pip install`` lines a Python cell starts with are the library's install's, the rest is the cell."""

from __future__ import annotations

from llm_sandbox.interactive.pip_lines import leading_pip_installs


def test_leading_pip_lines_are_taken_out_with_their_packages() -> None:
    code = "# set-up\n%pip install -q pandas 'numpy>=1'\n\n!pip install -U six  # the rest\nimport six\nprint(1)"
    assert leading_pip_installs(code) == (["pandas", "numpy>=1", "six"], "import six\nprint(1)")


def test_a_pip_line_after_the_code_starts_stays_in_the_cell() -> None:
    code = "import os\n%pip install six"
    assert leading_pip_installs(code) == ([], code)
    assert leading_pip_installs("print('%pip install six')") == ([], "print('%pip install six')")


def test_options_are_passed_on_to_be_refused_as_names() -> None:
    assert leading_pip_installs("%pip install --index-url=http://x six")[0] == ["--index-url=http://x", "six"]
